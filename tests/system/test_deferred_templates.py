"""Image templates render as LXD does: `create` and `copy` ones at the instance's first
start (volatile.apply_template), together with `start` ones in one render child, so a create
or a copy is only the volume copy."""

from __future__ import annotations

import io
import os
import tarfile

import pytest
import yaml

from tests.conftest import built_image

pytestmark = pytest.mark.system

TEMPLATES = {
    "/etc/created": ("created.tpl", ["create"]),
    "/etc/copied": ("copied.tpl", ["copy"]),
    "/etc/started": ("started.tpl", ["start"]),
}


@pytest.fixture(scope="module")
def templated_image(daemon, tmp_path_factory) -> str:
    """busybox with three templates, one per trigger: each writes '<name> <trigger>'."""
    (source,) = built_image("busybox", "unified")
    target = tmp_path_factory.mktemp("t5t") / "templated.tar.gz"
    with tarfile.open(source) as src, tarfile.open(target, "w:gz") as out:
        for member in src:
            data = src.extractfile(member) if member.isfile() else None
            if member.name.lstrip("./") == "metadata.yaml":
                meta = yaml.safe_load(data.read())  # type: ignore[union-attr]
                meta["templates"] = {path: {"template": tpl, "when": when}
                                     for path, (tpl, when) in TEMPLATES.items()}
                body = yaml.safe_dump(meta).encode()
                member.size = len(body)
                data = io.BytesIO(body)
            out.addfile(member, data)
        for tpl, _when in TEMPLATES.values():
            body = b"{{ instance.name }} {{ trigger }}\n"
            info = tarfile.TarInfo(f"templates/{tpl}")
            info.size, info.mode = len(body), 0o644
            out.addfile(info, io.BytesIO(body))
    daemon.ok("image", "import", os.fspath(target), "--alias", "t5t-templated")
    yield "t5t-templated"
    daemon.mc("image", "delete", "t5t-templated")


def read(daemon, name: str, path: str) -> str | None:
    target = daemon.instance_dir(name) / "rootfs" / path.lstrip("/")
    return target.read_text() if target.exists() else None


def pending(daemon, name: str) -> str | None:
    return daemon.api("GET", f"/1.0/instances/{name}")["config"].get("volatile.apply_template")


def test_create_and_copy_templates_render_at_the_first_start(daemon, templated_image):
    made = []
    try:
        daemon.ok("init", templated_image, "t5t-a")
        made.append("t5t-a")
        assert pending(daemon, "t5t-a") == "create"
        assert read(daemon, "t5t-a", "/etc/created") is None  # not at create: at first start
        # A copy of an instance that never started still owes the create templates.
        daemon.ok("copy", "t5t-a", "t5t-never")
        made.append("t5t-never")
        assert pending(daemon, "t5t-never") == "create"

        daemon.ok("start", "t5t-a")
        assert read(daemon, "t5t-a", "/etc/created") == "t5t-a create\n"
        assert read(daemon, "t5t-a", "/etc/started") == "t5t-a start\n"
        assert read(daemon, "t5t-a", "/etc/copied") is None
        assert pending(daemon, "t5t-a") is None

        daemon.ok("copy", "t5t-a", "t5t-b")
        made.append("t5t-b")
        assert pending(daemon, "t5t-b") == "copy"
        assert read(daemon, "t5t-b", "/etc/copied") is None
        daemon.ok("start", "t5t-b")
        assert read(daemon, "t5t-b", "/etc/copied") == "t5t-b copy\n"
        assert read(daemon, "t5t-b", "/etc/started") == "t5t-b start\n"
        assert read(daemon, "t5t-b", "/etc/created") == "t5t-a create\n"  # the source's file
        assert pending(daemon, "t5t-b") is None

        daemon.ok("start", "t5t-never")
        assert read(daemon, "t5t-never", "/etc/created") == "t5t-never create\n"
        assert read(daemon, "t5t-never", "/etc/copied") is None

        # Later starts render only the start templates.
        (daemon.instance_dir("t5t-a") / "rootfs/etc/created").write_text("edited\n")
        daemon.ok("restart", "t5t-a", "--force")
        assert read(daemon, "t5t-a", "/etc/created") == "edited\n"
    finally:
        for name in made:
            daemon.mc("delete", "--force", name)
