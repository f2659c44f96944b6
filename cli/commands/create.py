"""`mc init` (alias `create`) and `mc launch`: create instances from images."""

from __future__ import annotations

from typing import Any

import click

from cli.context import Env, pass_env
from cli.errors import CliError
from cli.params import local_name, parse_key_values, parse_remote


def create_request(
    image: str,
    name: str | None,
    *,
    config: tuple[str, ...] = (),
    profiles: tuple[str, ...] = (),
    no_profiles: bool = False,
    ephemeral: bool = False,
    storage: str | None = None,
    description: str | None = None,
    start: bool = False,
) -> dict[str, Any]:
    """The POST /1.0/instances body. The server resolves the image as alias or fingerprint."""
    _, image_name = parse_remote(image)
    body: dict[str, Any] = {
        "source": {"type": "image", "alias": image_name},
        "config": parse_key_values(config),
        "ephemeral": ephemeral,
        "start": start,
        "type": "container",
    }
    if name:
        body["name"] = name
    if no_profiles and profiles:
        raise CliError("--no-profiles can't be used together with --profile")
    if no_profiles:
        body["profiles"] = []
    elif profiles:
        body["profiles"] = list(profiles)
    if storage:
        body["devices"] = {"root": {"type": "disk", "path": "/", "pool": storage}}
    if description is not None:
        body["description"] = description
    return body


def instance_from_operation(op: dict[str, Any]) -> str:
    urls = (op.get("resources") or {}).get("instances") or []
    return str(urls[0]).rstrip("/").rsplit("/", 1)[-1] if urls else ""


def _create(env: Env, image: str, name: str | None, start: bool, **flags: Any) -> None:
    target = local_name(name) if name else None
    env.say(f"Creating {target}" if target else "Creating the instance")
    body = create_request(image, target, start=start, **flags)
    client = env.client()
    op = client.post("/1.0/instances", body, wait=False)
    if not target:
        target = instance_from_operation(op)
        if target:
            env.say(f"Instance name is: {target}")
    if start and target:
        env.say(f"Starting {target}")
    client.wait_operation(f"/1.0/operations/{op['id']}")


def _options(f: Any) -> Any:
    for option in reversed(
        [
            click.argument("image"),
            click.argument("name", required=False),
            click.option(
                "-c",
                "--config",
                multiple=True,
                metavar="KEY=VALUE",
                help="Config key/value to apply to the new instance (repeatable).",
            ),
            click.option(
                "-p",
                "--profile",
                "profiles",
                multiple=True,
                help="Profile to apply to the new instance (repeatable).",
            ),
            click.option("--no-profiles", is_flag=True, help="Apply no profiles."),
            click.option("-e", "--ephemeral", is_flag=True, help="Ephemeral instance."),
            click.option("-s", "--storage", help="Storage pool name."),
            click.option("--description", help="Instance description."),
        ]
    ):
        f = option(f)
    return pass_env(f)


@click.command("init")
@_options
def init(env: Env, image: str, name: str | None, **flags: Any) -> None:
    """Create an instance from an image (an alias or a fingerprint prefix).

    With no NAME the server picks one.
    """
    _create(env, image, name, start=False, **flags)


@click.command("launch")
@_options
def launch(env: Env, image: str, name: str | None, **flags: Any) -> None:
    """Create and start an instance from an image (an alias or a fingerprint prefix)."""
    _create(env, image, name, start=True, **flags)
