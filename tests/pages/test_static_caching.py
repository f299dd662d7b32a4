"""Static files are linked with a digest of their content and kept by browsers for good (apps/core/static_versions.py):
no page revalidates its scripts and stylesheets, and an edited file is a new URL at once."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from django.contrib.staticfiles import finders
from django.templatetags.static import static
from django.test import Client, override_settings

ROOT = Path(__file__).resolve().parents[2]
FOREVER = "max-age=31536000, public, immutable"


def _assets(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="(/static/[^"#]+)', html)


def test_every_script_and_stylesheet_of_a_page_is_kept_for_good(client, viewer):
    client.force_login(viewer)
    html = client.get("/graph/").content.decode()
    assets = _assets(html)
    assert any("cytoscape.min.js" in a for a in assets) and any("meshboard.css" in a for a in assets)
    for url in assets:
        path, _, query = url.partition("?")
        assert re.fullmatch(r"v=[0-9a-f]{12}", query), url
        response = Client().get(url)
        assert response.status_code == 200, url
        assert response["Cache-Control"] == FOREVER, url
        served = b"".join(response.streaming_content)
        assert served == Path(finders.find(path.removeprefix("/static/"))).read_bytes(), url


def test_a_url_without_the_digest_or_with_another_is_not_kept_for_good(client):
    current = static("js/meshboard.js")
    assert "?v=" in current
    for url in ("/static/js/meshboard.js", "/static/js/meshboard.js?v=000000000000", "/static/js/meshboard.js?v="):
        response = client.get(url)
        assert response.status_code == 200, url
        assert "immutable" not in response["Cache-Control"] and "max-age=31536000" not in response["Cache-Control"]
    # A revalidation with the current digest keeps the promise too.
    etag = client.get(current)["ETag"]
    revalidated = client.get(current, HTTP_IF_NONE_MATCH=etag)
    assert revalidated.status_code == 304 and revalidated["Cache-Control"] == FOREVER


def test_an_edited_file_gets_a_new_url_and_the_old_one_loses_the_promise(tmp_path):
    folder = tmp_path / "static"
    folder.mkdir()
    (folder / "canary-widget.js").write_text("console.log('one');\n")
    with override_settings(STATICFILES_DIRS=[folder, ROOT / "static"]):
        running = Client()  # WhiteNoise indexes the files (their sizes and times) when the server starts
        first = static("canary-widget.js")
        assert running.get(first)["Cache-Control"] == FOREVER
        (folder / "canary-widget.js").write_text("console.log('two, longer');\n")
        second = static("canary-widget.js")
        assert second != first and second.startswith("/static/canary-widget.js?v=")
        # The server that started before the edit still describes the old file (its length, its ETag): what it
        # answers must not be kept for a year, under either URL.
        for url in (first, second):
            assert "immutable" not in running.get(url)["Cache-Control"], url
        restarted = Client()
        assert restarted.get(second)["Cache-Control"] == FOREVER
        old = restarted.get(first)
        assert b"two, longer" in b"".join(old.streaming_content) and "immutable" not in old["Cache-Control"]


def test_the_digest_is_of_the_file_served_from_the_source_folders_before_static_root(tmp_path):
    source, root = tmp_path / "static", tmp_path / "collected"
    source.mkdir(), root.mkdir()
    (source / "both.js").write_text("// the source\n")
    (root / "both.js").write_text("// an older collectstatic\n")
    (root / "collected-only.js").write_text("// only in STATIC_ROOT\n")
    with override_settings(STATICFILES_DIRS=[source], STATIC_ROOT=root):
        client = Client()
        for name, text in (("both.js", b"// the source\n"), ("collected-only.js", b"// only in STATIC_ROOT\n")):
            url = static(name)
            response = client.get(url)
            served = b"".join(response.streaming_content)
            assert served == text, name
            assert url.endswith("?v=" + hashlib.blake2b(served, digest_size=6).hexdigest()), url
            assert response["Cache-Control"] == FOREVER, name


def test_a_name_no_file_is_served_for_keeps_its_plain_url():
    assert static("js/no-such-file.js") == "/static/js/no-such-file.js"
    assert static("js") == "/static/js"  # a folder
