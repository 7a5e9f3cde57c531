"""The official Python client against a running Rudder: pagination and watch resume.

Run by crates/rudder/tests/clients.rs with the server's kubeconfig as the only argument.
"""
import sys

from kubernetes import client, config, watch


def main(kubeconfig):
    config.load_kube_config(kubeconfig)
    v1 = client.CoreV1Api()

    names = [f"cm-{i:02d}" for i in range(25)]
    for name in names:
        v1.create_namespaced_config_map("default", {"metadata": {"name": name}, "data": {"n": name}})

    # Pagination: pages of 10 at one snapshot, every name exactly once.
    seen, token = [], None
    while True:
        page = v1.list_namespaced_config_map("default", limit=10, _continue=token)
        seen += [cm.metadata.name for cm in page.items]
        token = page.metadata._continue
        if not token:
            break
    assert seen == names, seen

    # Watch from the list's resourceVersion sees later changes, in order.
    rv = v1.list_namespaced_config_map("default").metadata.resource_version
    for name in ["w-1", "w-2", "w-3"]:
        v1.create_namespaced_config_map("default", {"metadata": {"name": name}})
    events = []
    w = watch.Watch()
    for ev in w.stream(v1.list_namespaced_config_map, "default", resource_version=rv, timeout_seconds=10):
        events.append((ev["type"], ev["object"].metadata.name, ev["object"].metadata.resource_version))
        if len(events) == 3:
            w.stop()
    assert [e[:2] for e in events] == [("ADDED", "w-1"), ("ADDED", "w-2"), ("ADDED", "w-3")], events

    # Resuming from the second event's resourceVersion delivers only what came after it.
    v1.delete_namespaced_config_map("w-1", "default")
    resumed = []
    w = watch.Watch()
    for ev in w.stream(v1.list_namespaced_config_map, "default", resource_version=events[1][2], timeout_seconds=10):
        resumed.append((ev["type"], ev["object"].metadata.name))
        if len(resumed) == 2:
            w.stop()
    assert resumed == [("ADDED", "w-3"), ("DELETED", "w-1")], resumed

    # Errors arrive as ApiException with upstream's status.
    try:
        v1.read_namespaced_config_map("missing", "default")
        raise AssertionError("expected a 404")
    except client.exceptions.ApiException as e:
        assert e.status == 404 and '"reason":"NotFound"' in e.body.replace(" ", ""), e.body

    print("python client: ok")


if __name__ == "__main__":
    main(sys.argv[1])
