"""`mc image build RECIPE.yaml`: build an image on this host, import it, point its alias."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from cli.context import Env, pass_env
from cli.errors import CliError

DEFAULT_OUT = Path("/var/cache/machined/images")


def default_alias(recipe: dict[str, Any]) -> str | None:
    """`image.distribution/image.release` of a recipe, e.g. debian/12."""
    image = recipe.get("image") or {}
    dist, release = image.get("distribution"), image.get("release")
    return f"{dist}/{release}" if dist and release else None


def load_recipe(path: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise CliError(f"{path} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise CliError(f"{path} is not a recipe (expected a YAML mapping)")
    return data


def _progress(env: Env) -> Any:
    def report(*args: Any, **_kw: Any) -> None:
        if not env.quiet and len(args) == 1 and isinstance(args[0], str):
            print(args[0], file=sys.stderr)

    return report


@click.command("build", short_help="Build and import an image from a recipe.")
@click.argument("recipe", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--alias",
    "aliases",
    multiple=True,
    help="Alias for the image (repeatable; default: distribution/release).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["unified", "split"]),
    default="unified",
    show_default=True,
    help="Image file layout.",
)
@click.option(
    "--out-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_OUT,
    show_default=True,
    help="Where the image files are written.",
)
@click.option("--public", is_flag=True, help="Make the image public.")
@pass_env
def build(
    env: Env, recipe: Path, aliases: tuple[str, ...], fmt: str, out_dir: Path, public: bool
) -> None:
    """Build an image from a recipe, import it and point its alias at it."""
    from cli.commands.image import import_files, set_alias

    names = list(aliases)
    if not names:
        name = default_alias(load_recipe(recipe))
        if name is None:
            raise CliError(f"{recipe} has no image.distribution/image.release; pass --alias")
        names = [name]
    try:
        from machined.images.build import build_image
    except ImportError as e:
        raise CliError(f"Image building is unavailable: {e}") from None
    client = env.client()
    client.get("/1.0")  # fail early, before a long build, if machined is not running
    env.say(f"Building {recipe}")
    built = build_image(recipe, out_dir, fmt=fmt, progress=_progress(env))
    fingerprint = str(built.fingerprint)
    if client.exists(f"/1.0/images/{fingerprint}"):
        env.say(f"Image {fingerprint[:12]} is already imported")
    else:
        fingerprint = import_files(client, [Path(p) for p in built.paths], public)
        env.say(f"Image imported with fingerprint: {fingerprint}")
    for name in names:
        set_alias(client, name, fingerprint)
        env.say(f"Alias {name} -> {fingerprint[:12]}")
