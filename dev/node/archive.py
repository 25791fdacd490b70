"""Write a docker-archive image of one static binary, for ``ctr images import``.

usage: python3 dev/node/archive.py NAME:TAG BINARY OUT.tar

The image holds BINARY as ``/<basename>`` and runs it as its entrypoint: enough for
the pause image (no registry is reachable to pull it) and for small test images.
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
import tarfile
from pathlib import Path


def layer(binary: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tar.gettarinfo(str(binary), arcname=binary.name)
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mtime = 0
        info.mode = 0o755
        with binary.open("rb") as handle:
            tar.addfile(info, handle)
    return buffer.getvalue()


def write_archive(reference: str, binary: Path, out: Path) -> None:
    layer_bytes = layer(binary)
    diff_id = "sha256:" + hashlib.sha256(layer_bytes).hexdigest()
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Entrypoint": [f"/{binary.name}"], "User": "65535:65535"},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": f"dev/node/archive.py {binary.name}"}],
    }, sort_keys=True).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    layer_name = diff_id.removeprefix("sha256:") + "/layer.tar"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [reference],
                            "Layers": [layer_name]}]).encode()
    with tarfile.open(out, mode="w") as tar:
        for name, data in ((config_name, config), (layer_name, layer_bytes),
                           ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    write_archive(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]))
