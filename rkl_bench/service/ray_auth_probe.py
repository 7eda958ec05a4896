"""``python ray_auth_probe.py HOST:PORT``: does the GCS there accept this process's credentials?

Run by ``ray_auth.cluster_needs_token`` in a process of its own, because
Ray reads ``RAY_AUTH_MODE`` once per process. Prints ``accepted`` or
``refused`` (an authentication error); anything else (no answer, another
error) is left to ``ray.init`` by the caller. The GCS client is a private
Ray API, so the question itself is asked in ``private_apis.gcs_verdict``.
"""

import sys

if __name__ == "__main__":
    from rkl_bench.service.private_apis import gcs_verdict

    print(gcs_verdict(sys.argv[1]), flush=True)
