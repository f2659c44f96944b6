"""The `mc` executable. `mc exec` in its plain forms runs without importing click (see
cli/exec_core.py); everything else goes to the click CLI in cli/main.py."""

import sys


def main() -> None:
    args = sys.argv[1:]
    if args[:1] == ["exec"]:
        from cli.exec_core import parse_fast

        params = parse_fast(args[1:])
        if params is not None:
            from cli.exec_core import run_fast

            sys.exit(run_fast(params))
    from cli.main import main as click_main

    click_main()


if __name__ == "__main__":
    main()
