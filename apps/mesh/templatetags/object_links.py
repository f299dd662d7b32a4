"""Links to objects named by the cluster, built only from names that follow Kubernetes' rules (apps.mesh.names).

    {% load object_links %}
    {% object_link "overview:detail" "Service" namespace name %}{{ name }}{% endobject_link %}
    {% object_link "overview:detail" "Service" ns name note="OSM cannot route to it" %}{{ name }}{% endobject_link %}
    {% object_url "overview:series" "Service" namespace name as series_url %}

`object_link` renders `<a href="...">content</a>` when the namespace and the name follow their rules, and otherwise
the content as inert text with a note saying why there is no link: `<span class="inert">content</span>
<small class="inert-note">not a valid Service name: no page</small>` (`note` replaces "no page"). The content is
rendered by the template as usual, so it is escaped as usual. `object_url` gives the URL, or "" for such a name.
"""

from __future__ import annotations

from django import template
from django.template.base import FilterExpression, NodeList, Parser, Token, token_kwargs
from django.template.context import Context
from django.utils.html import format_html

from apps.mesh import names

register = template.Library()

NO_PAGE = "no page"


class ObjectLinkNode(template.Node):
    def __init__(self, nodelist: NodeList, args: list[FilterExpression], kwargs: dict[str, FilterExpression]) -> None:
        self.nodelist = nodelist
        self.args = args
        self.kwargs = kwargs

    def render(self, context: Context) -> str:
        route, kind, namespace, name = (arg.resolve(context) for arg in self.args)
        content = self.nodelist.render(context)
        problem = names.name_problem(str(kind), namespace, name)
        if problem:
            note = self.kwargs["note"].resolve(context) if "note" in self.kwargs else NO_PAGE
            return format_html(
                '<span class="inert">{}</span> <small class="inert-note">{}: {}</small>', content, problem, note
            )
        return format_html('<a href="{}">{}</a>', names.object_url(str(route), str(kind), namespace, name), content)


@register.tag
def object_link(parser: Parser, token: Token) -> ObjectLinkNode:
    bits = token.split_contents()
    tag, positional, rest = bits[0], bits[1:5], bits[5:]
    kwargs = token_kwargs(rest, parser)  # consumes what it reads
    if len(positional) != 4 or rest or set(kwargs) - {"note"}:
        raise template.TemplateSyntaxError(
            f'{tag} takes a route, a kind, a namespace, a name and optionally note="..."'
        )
    args = [parser.compile_filter(b) for b in positional]
    nodelist = parser.parse((f"end{tag}",))
    parser.delete_first_token()
    return ObjectLinkNode(nodelist, args, kwargs)


@register.simple_tag
def object_url(route: str, kind: str, namespace: object, name: object) -> str:
    return names.object_url(route, kind, namespace, name)
