from kubernetes import client, config


def test_it_serves_the_small_seed_to_the_official_client(kubeapi):
    api = config.new_client_from_config(str(kubeapi.kubeconfig))
    pods = client.CoreV1Api(api).list_pod_for_all_namespaces()
    assert pods.kind == "PodList"
    assert pods.items
