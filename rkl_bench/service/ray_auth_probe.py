"""``python ray_auth_probe.py HOST:PORT``: does the GCS there accept this process's credentials?

Run by ``ray_auth.cluster_needs_token`` in a process of its own, because
Ray reads ``RAY_AUTH_MODE`` once per process. Prints ``accepted`` or
``refused`` (an authentication error); anything else (no answer, another
error) prints nothing useful and the caller leaves the question to ``ray.init``.
"""

import sys


def main(address: str) -> str:
    import ray._raylet as raylet

    try:
        client = raylet.GcsClient(address=address, cluster_id=None)
        client.internal_kv_keys(b"rkl-bench-probe", namespace=None, timeout=5)
    except raylet.AuthenticationError:
        return "refused"
    except Exception as exc:  # noqa: BLE001 - reported as unknown
        return f"unknown {type(exc).__name__}"
    return "accepted"


if __name__ == "__main__":
    print(main(sys.argv[1]), flush=True)
