"""1,000 concurrent updates of one object from the same resourceVersion: exactly one wins,
every other gets upstream's 409 Conflict. Run by crates/rudder/tests/clients.rs."""
import sys
from concurrent.futures import ThreadPoolExecutor

from kubernetes import client, config


def main(kubeconfig):
    config.load_kube_config(kubeconfig)
    v1 = client.CoreV1Api()
    cm = v1.create_namespaced_config_map("default", {"metadata": {"name": "contended"}, "data": {"n": "0"}})
    rv = cm.metadata.resource_version

    def update(i):
        body = {"metadata": {"name": "contended", "resourceVersion": rv}, "data": {"n": str(i + 1)}}  # never the current value: a no-op update would rightly succeed
        try:
            v1.replace_namespaced_config_map("contended", "default", body)
            return "ok"
        except client.exceptions.ApiException as e:
            assert e.status == 409, e.body
            assert 'Operation cannot be fulfilled on configmaps \\"contended\\": the object has been modified' in e.body, e.body
            return "conflict"

    with ThreadPoolExecutor(max_workers=32) as pool:
        results = list(pool.map(update, range(1000)))
    assert results.count("ok") == 1, results.count("ok")
    assert results.count("conflict") == 999
    final = v1.read_namespaced_config_map("contended", "default")
    assert int(final.metadata.resource_version) > int(rv)
    print("conflicts: ok")


if __name__ == "__main__":
    main(sys.argv[1])
