"""How fast Storage.copy_from_url streams a file into S3, and how much memory it takes to do it, next to a plain
streamed copy between the same two servers.

    python bench/storage_memory.py            100 MiB
    python bench/storage_memory.py --big      100 MiB and 1 GiB

Starts its own moto S3 server and byte server (tests/support/byteserver.py), each in its own process, then runs
each copy in a fresh child process (this script with --measure) so that the child's peak RSS growth belongs to
that copy alone. The plain copy is what any script would do: httpx's stream cut into parts of the same size and
sent with the same boto3 client settings (one PutObject, or a multipart upload), without genqueue's bounds,
hashing, sha256 metadata and check. Prints bytes copied, seconds, MiB/s, peak RSS growth and the tracemalloc peak,
in MiB, for each, and genqueue's speed as a fraction of the plain copy's (issue 15's target: at least 0.70, with
at most 64 MiB of peak RSS growth).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402

from shared.settings import Settings  # noqa: E402
from shared.storage import Storage  # noqa: E402
from shared.storage.client import make_s3_client  # noqa: E402
from shared.storage.streaming import iter_parts  # noqa: E402
from tests.support.byteserver import expected_sha256  # noqa: E402
from tests.support.processes import ServerProcess, free_port, port_open  # noqa: E402

if TYPE_CHECKING:
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

MiB = 1024 * 1024


def max_rss_bytes() -> int:
    """This process's peak resident set size so far (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure(endpoint: str, bucket: str, url: str, part_bytes: int) -> dict[str, object]:
    """Copy `url` into `bucket` once, in this process; what it cost."""
    settings = Settings(s3_endpoint_url=endpoint, s3_bucket=bucket, s3_region="us-east-1", upload_part_bytes=part_bytes)
    storage = Storage(settings)
    storage.ensure_bucket()  # loads the S3 service model and opens a connection: not part of the copy
    with httpx.Client() as http:
        rss_before = max_rss_bytes()
        tracemalloc.start()
        started = time.perf_counter()
        output = storage.copy_from_url(http, url, f"bench/{uuid.uuid4().hex}.bin")
        seconds = time.perf_counter() - started
        traced_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        rss_after = max_rss_bytes()
    storage.client.delete_object(Bucket=bucket, Key=output.key)
    return {
        "bytes": output.size,
        "sha256": output.sha256,
        "seconds": round(seconds, 3),
        "mib_per_s": round(output.size / MiB / seconds, 1),
        "rss_growth_mib": round((rss_after - rss_before) / MiB, 1),
        "tracemalloc_peak_mib": round(traced_peak / MiB, 1),
    }


def measure_plain(endpoint: str, bucket: str, url: str, part_bytes: int) -> dict[str, object]:
    """Copy `url` into `bucket` the plain way, in this process; what it cost."""
    settings = Settings(s3_endpoint_url=endpoint, s3_bucket=bucket, s3_region="us-east-1", upload_part_bytes=part_bytes)
    client = make_s3_client(settings)
    client.head_bucket(Bucket=bucket)  # loads the S3 service model and opens a connection: not part of the copy
    key = f"bench/{uuid.uuid4().hex}.bin"
    with httpx.Client() as http:
        rss_before = max_rss_bytes()
        tracemalloc.start()
        started = time.perf_counter()
        size = 0
        with http.stream("GET", url) as response:
            parts = iter_parts(response.iter_bytes(), part_bytes)
            first, last = next(parts)
            size += len(first)
            if last:
                client.put_object(Bucket=bucket, Key=key, Body=first)  # type: ignore[arg-type]
            else:
                upload = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
                done: list[CompletedPartTypeDef] = []
                for number, (part, _) in enumerate(itertools.chain([(first, False)], parts), start=1):
                    if number > 1:
                        size += len(part)
                    answer = client.upload_part(
                        Bucket=bucket,
                        Key=key,
                        UploadId=upload,
                        PartNumber=number,
                        Body=part,  # type: ignore[arg-type]
                    )
                    done.append({"PartNumber": number, "ETag": answer["ETag"]})
                client.complete_multipart_upload(
                    Bucket=bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": done}
                )
        seconds = time.perf_counter() - started
        traced_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        rss_after = max_rss_bytes()
    client.delete_object(Bucket=bucket, Key=key)
    return {
        "bytes": size,
        "seconds": round(seconds, 3),
        "mib_per_s": round(size / MiB / seconds, 1),
        "rss_growth_mib": round((rss_after - rss_before) / MiB, 1),
        "tracemalloc_peak_mib": round(traced_peak / MiB, 1),
    }


def run_child(endpoint: str, bucket: str, url: str, part_bytes: int, plain: bool = False) -> dict[str, object]:
    """`measure` (or, `plain`, `measure_plain`) in a fresh Python process; its JSON answer."""
    argv = [sys.executable, str(Path(__file__).resolve()), "--measure", endpoint, bucket, url, "--part-mib"]
    argv.append(str(part_bytes // MiB))
    if plain:
        argv.append("--plain")
    done = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=REPO)
    if done.returncode != 0:
        raise RuntimeError(f"measuring child failed ({done.returncode}): {done.stderr[-3000:]}")
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description="Storage copy throughput and memory")
    parser.add_argument("--big", action="store_true", help="also copy 1 GiB")
    parser.add_argument("--part-mib", type=int, default=8)
    parser.add_argument("--measure", nargs=3, metavar=("ENDPOINT", "BUCKET", "URL"), help=argparse.SUPPRESS)
    parser.add_argument("--plain", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    part_bytes = args.part_mib * MiB
    if args.measure:
        endpoint, bucket, url = args.measure
        copy = measure_plain if args.plain else measure
        print(json.dumps(copy(endpoint, bucket, url, part_bytes)))
        return

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(name, "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    sizes = [100 * MiB] + ([1024 * MiB] if args.big else [])
    with tempfile.TemporaryDirectory(prefix="bench-storage-") as workdir:
        moto_port, bytes_port = free_port(), free_port()
        moto = ServerProcess(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)], Path(workdir) / "moto.log"
        )
        server = ServerProcess(
            [sys.executable, "-m", "tests.support.byteserver", "--port", str(bytes_port)], Path(workdir) / "bytes.log"
        )
        try:
            moto.wait_until(lambda: port_open(moto_port), what="moto server")
            server.wait_until(lambda: port_open(bytes_port), what="byte server")
            endpoint = f"http://127.0.0.1:{moto_port}"
            print(f"Storage.copy_from_url: moto S3 server and byte server on loopback, parts of {args.part_mib} MiB")
            print(
                f"{'size':>9} {'copy':>8} {'bytes copied':>14} {'seconds':>8} {'MiB/s':>7} {'peak RSS +MiB':>14}"
                f" {'traced MiB':>11}"
            )
            for size in sizes:
                url = f"http://127.0.0.1:{bytes_port}/bytes/{size}"
                ours = run_child(endpoint, "bench-storage", url, part_bytes)
                if ours["sha256"] != expected_sha256(size):
                    raise RuntimeError(f"copy of {size} bytes stored a different sha256")
                plain = run_child(endpoint, "bench-storage", url, part_bytes, plain=True)
                for name, result in (("genqueue", ours), ("plain", plain)):
                    print(
                        f"{size // MiB:>5} MiB {name:>8} {result['bytes']:>14} {result['seconds']:>8}"
                        f" {result['mib_per_s']:>7} {result['rss_growth_mib']:>14} {result['tracemalloc_peak_mib']:>11}"
                    )
                ratio = float(str(ours["mib_per_s"])) / float(str(plain["mib_per_s"]))
                print(f"{size // MiB:>5} MiB genqueue's speed / the plain copy's: {ratio:.2f} (target ≥ 0.70)")
        finally:
            server.stop()
            moto.stop()


if __name__ == "__main__":
    main()
