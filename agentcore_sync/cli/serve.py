"""``agentcore-sync serve MODULE:APP``: serve an agent on waitress or gunicorn.

Either server gets the settings that keep ``/ping`` answered behind long
invocations (threads, an invocation bound below the thread count, long
timeouts): waitress through ``servers.serving.serve``, as ``app.run()``;
gunicorn through ``servers.gunicorn_config``, as ``gunicorn.conf.py``.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

import click

from ..core.lifespan import LifespanFailed
from ..core.runtime import Runtime
from ..servers import gunicorn_config
from ..servers.serving import DEFAULT_THREADS, default_host, runtimes_of
from ..servers.serving import serve as serve_on_waitress


class Target:
    """``MODULE:APP`` or ``path/to/file.py:APP``: where the agent is, checked before importing."""

    def __init__(self, text: str) -> None:
        self.text = text
        module, _, attr = text.partition(":")
        self.attr = attr or "app"
        if module.endswith(".py"):
            path = Path(module).resolve()
            if not path.is_file():
                raise ValueError(f"no such file: {module}")
            self.directory: str = str(path.parent)
            self.module = path.stem
        else:
            # Like gunicorn and waitress-serve: the module is looked for here first.
            self.directory = os.getcwd()
            self.module = module
        if not self.module.replace(".", "").replace("_", "").isalnum() or not all(
            part.isidentifier() for part in self.attr.split(".")
        ):
            raise ValueError(f"{text!r} is not MODULE:APP, e.g. my_agent:app")

    def add_to_path(self) -> None:
        if self.directory not in sys.path:
            sys.path.insert(0, self.directory)

    def check(self) -> None:
        """Fail now, with a clear error, if the module cannot be found (it is not run)."""
        self.add_to_path()
        try:
            spec = importlib.util.find_spec(self.module)
        except ModuleNotFoundError as exc:
            spec = None
            missing = exc.name
        else:
            missing = self.module
        if spec is None:
            raise ValueError(
                f"no module named {missing!r} (looked in {self.directory} and on sys.path)"
            )

    def load(self) -> Any:
        """Import the module and return the app object."""
        self.add_to_path()
        module = importlib.import_module(self.module)
        obj: Any = module
        for part in self.attr.split("."):
            try:
                obj = getattr(obj, part)
            except AttributeError:
                raise ValueError(f"module {self.module!r} has no attribute {self.attr!r}") from None
        if not callable(obj) and not isinstance(obj, Runtime):
            raise ValueError(f"{self.text} is a {type(obj).__name__}, not an app")
        return obj


def wsgi_app(obj: Any, metrics_path: str | None) -> tuple[Any, list[Runtime]]:
    """The WSGI application serving ``obj``, and the runtimes it serves.

    ``obj`` is a ``BedrockAgentCoreApp``, an ``AgentCore`` (served alone), or any
    WSGI app (a Flask app with an agent mounted into it).
    """
    if isinstance(obj, Runtime):
        runtimes = [obj]
        app = obj.wsgi_app_for_serving()  # type: ignore[attr-defined]
    else:
        app = obj
        mounted = getattr(app, "blueprints", {}).values()
        runtimes = [
            r
            for r in Runtime.instances
            if any(bp is getattr(r, "blueprint", None) for bp in mounted)
        ] or runtimes_of(app)
    if metrics_path:
        from ..observability.metrics import enable_metrics

        if len(runtimes) != 1:
            raise ValueError(
                f"--metrics-path serves the metrics of one agent; this app has {len(runtimes)}"
            )
        blueprint = enable_metrics(runtimes[0], metrics_path)
        # The app gets the route here, unless it has it already (mounted by the user,
        # or by the runtime's own metrics_path).
        if blueprint.name not in getattr(app, "blueprints", {}):
            if not hasattr(app, "register_blueprint"):
                raise ValueError("--metrics-path needs a Flask app to add its route to")
            app.register_blueprint(blueprint)
    return app, runtimes


def serve_waitress(
    target: Target, host: str, port: int, threads: int, metrics_path: str | None
) -> None:
    """Serve on waitress in this process until SIGTERM or Ctrl-C, then shut the agent down."""
    app, runtimes = wsgi_app(target.load(), metrics_path)
    click.echo(
        f"Serving {target.text} on http://{host}:{port} (waitress, {threads} threads)", err=True
    )
    serve_on_waitress(app, runtimes, port=port, host=host, threads=threads)


def serve_gunicorn(
    target: Target,
    host: str,
    port: int,
    threads: int,
    workers: int,
    reload: bool,
    metrics_path: str | None,
) -> None:
    """Run a gunicorn master here; each worker imports the app (no preload: no forked threads)."""
    from gunicorn.app.base import BaseApplication

    class Application(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            settings = {
                **gunicorn_config.SETTINGS,
                "proc_name": "agentcore-sync",
                "bind": [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"],
                "threads": threads,
                "workers": workers,
                "reload": reload,
            }
            for name, value in settings.items():
                self.cfg.set(name, value)

        def load(self) -> Any:
            return wsgi_app(target.load(), metrics_path)[0]

    click.echo(
        f"Serving {target.text} on http://{host}:{port} "
        f"(gunicorn, {workers} worker(s) x {threads} threads)",
        err=True,
    )
    Application().run()


@click.command(short_help="Serve an agent on waitress or gunicorn.")
@click.argument("target", metavar="MODULE:APP")
@click.option(
    "--server",
    type=click.Choice(["waitress", "gunicorn"]),
    default="waitress",
    show_default=True,
    help="The WSGI server.",
)
@click.option("--host", help="Interface to listen on [127.0.0.1; 0.0.0.0 in a container].")
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=8080,
    envvar="PORT",
    show_default=True,
    help="Port to listen on (also $PORT).",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=DEFAULT_THREADS,
    show_default=True,
    help="Threads per process; two are kept free of invocations for /ping.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Processes (gunicorn only); /ping counts the tasks of all of them.",
)
@click.option("--reload", is_flag=True, help="Restart when a source file changes (development).")
@click.option(
    "--metrics-path",
    metavar="PATH",
    help="Also serve Prometheus metrics at PATH, e.g. /metrics (needs agentcore_sync[metrics]).",
)
def serve(
    target: str,
    server: str,
    host: str | None,
    port: int,
    threads: int,
    workers: int,
    reload: bool,
    metrics_path: str | None,
) -> None:
    """Serve the agent MODULE:APP (a BedrockAgentCoreApp, an AgentCore, or a Flask app).

    MODULE is imported from the current directory, or given as a file:

    \b
      agentcore-sync serve my_agent:app
      agentcore-sync serve examples/simple_agent.py --reload
      agentcore-sync serve my_agent:app --server gunicorn --workers 2
    """
    if workers > 1 and server != "gunicorn":
        raise click.UsageError(
            f"--workers {workers} needs --server gunicorn: waitress is one process with threads"
        )
    if metrics_path is not None:
        from ..observability.metrics import MetricsUnavailable, check_path, require_prometheus

        try:
            check_path(metrics_path)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--metrics-path") from None
        try:
            require_prometheus()
        except MetricsUnavailable as exc:
            raise click.ClickException(str(exc)) from None
    try:
        parsed = Target(target)
        parsed.check()
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="MODULE:APP") from None
    host = host or default_host()
    if server == "gunicorn":
        serve_gunicorn(parsed, host, port, threads, workers, reload, metrics_path)
        return
    if reload:
        from .reloader import run_with_reloader

        argv = [sys.executable, "-m", "agentcore_sync", "serve", target, "--host", host]
        argv += ["--port", str(port), "--threads", str(threads)]
        if metrics_path:
            argv += ["--metrics-path", metrics_path]
        roots = sorted({Path.cwd().resolve(), Path(parsed.directory).resolve()})
        sys.exit(run_with_reloader(argv, roots))
    try:
        serve_waitress(parsed, host, port, threads, metrics_path)
    except LifespanFailed as exc:
        raise click.ClickException(f"{exc} (traceback logged above); not serving") from None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="MODULE:APP") from None
