"""``vramplan serve``: the local web app."""

from __future__ import annotations

import click


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", type=click.IntRange(0, 65535), default=8421, show_default=True, help="Port (0: any free).")
@click.option("--open/--no-open", "open_browser", default=True, help="Open the page in a browser.")
@click.option("--allow-paths", is_flag=True,
              help="Let model= name a config.json on this machine (off: catalog names and counts only).")
def command(host: str, port: int, open_browser: bool, allow_paths: bool) -> None:
    """Open a local web page with the same estimates, a stacked chart of the
    breakdown, and curves of memory against batch size and context length."""
    from vramplan.web.server import make_server

    try:
        server = make_server(host, port, allow_paths=allow_paths)
    except OSError as exc:
        from vramplan.errors import InputError

        raise InputError(f"--port: cannot bind {host}:{port} ({exc.strerror})") from None
    url = f"http://{host}:{server.server_address[1]}/"
    click.echo(f"vramplan web app on {url} (Ctrl-C to stop)")
    if open_browser:
        import webbrowser

        webbrowser.open(url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
