"""The `crm` command: run the whole platform on one machine, migrate, serve one service.

`crm up` starts the embedded broker (unless `--kafka` names one), creates the topics,
migrates every service's database, starts the four services as separate processes
(each with its relay and consumers), waits for every `/readyz`, and prints where they are.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import httpx
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from shared.broker import EmbeddedBroker, die_with_parent, port_open
from shared.db import SchemaTooOld, check_schema, create_engine
from shared.db import migrate as migrate_database
from shared.settings import ServiceSettings, project_data_dir
from shared.topics import ensure_platform_topics

SERVICES = ("profile", "tiering", "outreach", "complaints")
T = TypeVar("T")

app = typer.Typer(help="Customer-retention platform: run, migrate and serve the services.")
console = Console(stderr=True)


def service_module(name: str) -> Any:
    if name not in SERVICES:
        raise typer.BadParameter(f"unknown service {name!r}; one of {', '.join(SERVICES)}")
    return importlib.import_module(f"services.{name}.app")


def _settings_class(name: str) -> type[ServiceSettings]:
    module = importlib.import_module(f"services.{name}.settings")
    found: type[ServiceSettings] = next(
        value
        for key, value in vars(module).items()
        if key.endswith("Settings") and value is not ServiceSettings
    )
    return found


def service_settings(name: str) -> ServiceSettings:
    """The service's settings as its process will read them from the environment; a bad
    one stops the command with one line per problem, naming the variable."""
    settings_class = _settings_class(name)
    try:
        settings: ServiceSettings = settings_class()
    except ValidationError as exc:
        prefix = settings_class.model_config.get("env_prefix", "CRM_")
        for error in exc.errors():
            loc = error.get("loc") or ()
            field = str(loc[0]) if loc else ""
            variable = _variable_of(settings_class, field, prefix)
            message = str(error["msg"]).removeprefix("Value error, ")
            if len(loc) > 1:  # inside the variable's JSON: say where, and what was sent there
                where = ".".join(_masked(field, depth, str(part)) for depth, part in enumerate(loc))
                message = f"{where.split('.', 1)[1]}: {message}"
                if error["type"] in ("extra_forbidden", "missing") or len(loc) > 2:
                    message += f" (got {_shape(error.get('input'))})"
            console.print(f"[red]{variable + ': ' if variable else ''}{message}[/]", soft_wrap=True)
        raise typer.Exit(2) from None
    return settings


def _masked(field: str, depth: int, part: str) -> str:
    """A path element of a settings error; an API key (a secret) shows its first 4 characters."""
    return f"{part[:4]}…" if field == "api_keys" and depth == 1 else part


def _shape(value: Any) -> str:
    """What was sent, without the values (they may be secrets): an object's keys, a type."""
    if isinstance(value, dict):
        return "an object with " + (", ".join(map(repr, value)) or "no fields")
    return type(value).__name__


def _variable_of(settings_class: type[ServiceSettings], field: str, prefix: str) -> str:
    """The environment variable a settings field is read from (`CRM_...`)."""
    info = settings_class.model_fields.get(field)
    if info is None:
        return ""
    alias = info.validation_alias
    choices = getattr(alias, "choices", None)
    if choices:
        return str(next((c for c in choices if str(c).startswith("CRM_")), choices[-1]))
    return f"{prefix}{field}".upper()


def use_project_environment(data_dir: Path | None = None) -> tuple[Path, str | None]:
    """What every command runs with, as `crm up` sets it for its services: the data
    folder (the project's own by default, whatever the current folder) and the API keys
    kept in it, unless CRM_API_KEYS is given. The folder, and the admin key to print
    (None when the keys came from the environment)."""
    folder = (data_dir or Path(os.environ.get("CRM_DATA_DIR") or project_data_dir())).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    os.environ["CRM_DATA_DIR"] = str(folder)
    api_keys, admin_key = load_or_create_api_keys(folder)
    os.environ["CRM_API_KEYS"] = api_keys
    return folder, admin_key


def load_or_create_api_keys(data_dir: Path) -> tuple[str, str | None]:
    """CRM_API_KEYS from the environment, or keys kept in the data folder (made on first run).

    Returns the JSON to hand the services and the admin key to print (None when the
    keys came from the environment: we do not echo an operator's secrets).
    """
    from_env = os.environ.get("CRM_API_KEYS", "").strip()
    if from_env:
        return from_env, None
    keys_file = data_dir / "api-keys.json"
    if keys_file.exists():
        keys = json.loads(keys_file.read_text())
    else:
        data_dir.mkdir(parents=True, exist_ok=True)
        keys = {secrets.token_urlsafe(24): {"roles": ["admin"], "user": "admin"}}
        keys_file.write_text(json.dumps(keys, indent=2))
        keys_file.chmod(0o600)
    admin_key = next(key for key, grant in keys.items() if "admin" in grant.get("roles", []))
    return json.dumps(keys), admin_key


@app.command()
def migrate(
    service: Annotated[
        list[str] | None, typer.Option("--service", "-s", help="Only these services.")
    ] = None,
) -> None:
    """Bring each service's database to the latest schema."""
    use_project_environment()
    for name in service or SERVICES:
        module = service_module(name)
        settings = service_settings(name)
        asyncio.run(migrate_database(settings.database_url, module.DEFINITION.migrations_dir))
        console.print(f"[green]migrated[/] {name}: {_safe_url(settings.database_url)}")


@app.command("wait-for-schema")
def wait_for_schema(
    service: Annotated[str, typer.Argument(help="profile, tiering, outreach, complaints")],
    timeout: Annotated[float, typer.Option(help="Give up after this many seconds.")] = 600,
) -> None:
    """Wait until the service's database has the schema this release needs (a pod's init
    container, while the release's migration Job runs); migrates nothing."""
    module = service_module(service)
    settings = service_settings(service)
    deadline = time.monotonic() + timeout
    while True:
        try:
            asyncio.run(
                _schema_is_current(settings.database_url, module.DEFINITION.migrations_dir, service)
            )
            console.print(f"[green]schema current[/] {service}")
            return
        except SchemaTooOld as exc:
            if time.monotonic() >= deadline:
                console.print(f"[red]{exc}[/]")
                raise typer.Exit(1) from exc
        time.sleep(2)


@app.command()
def serve(
    service: Annotated[str, typer.Argument(help="profile, tiering, outreach, complaints")],
) -> None:
    """Serve one service (HTTP, outbox relay and consumers) with uvicorn."""
    import uvicorn

    from shared.app import tune_garbage_collector
    from shared.observability import configure_logging

    module = service_module(service)
    settings = service_settings(service)
    configure_logging(service, settings.log_level, settings.log_json)
    tune_garbage_collector(settings)
    try:
        asyncio.run(
            _schema_is_current(settings.database_url, module.DEFINITION.migrations_dir, service)
        )
    except SchemaTooOld as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from exc
    uvicorn.run(
        f"services.{service}.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        root_path=settings.root_path,
        log_config=None,
        access_log=False,
        lifespan="on",
    )


@app.command()
def health(
    service: Annotated[
        str | None,
        typer.Argument(
            help="the service to ask (or CRM_SERVICE); without either, any on this host",
            envvar="CRM_SERVICE",
        ),
    ] = None,
) -> None:
    """Exit 0 when the service on this host answers /healthz (the image's HEALTHCHECK)."""
    import urllib.request

    if service is not None and service not in SERVICES:
        raise typer.BadParameter(f"unknown service {service!r}; one of {', '.join(SERVICES)}")
    names = [service] if service else list(SERVICES)
    for name in names:
        settings_class = _settings_class(name)
        prefix = settings_class.model_config.get("env_prefix", "CRM_")
        port = os.environ.get(f"{prefix}PORT") or settings_class.model_fields["port"].default
        url = f"http://127.0.0.1:{port}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=3) as answer:
                if answer.status == 200:
                    return
        except OSError:
            continue
    console.print(f"[red]no healthy service on this host ({', '.join(names)})[/]")
    raise typer.Exit(1)


async def _schema_is_current(url: str, migrations_dir: Path, service: str) -> None:
    engine = create_engine(url)
    try:
        await check_schema(engine, migrations_dir, service)
    finally:
        await engine.dispose()


@app.command("import")
def import_file(
    kind: Annotated[str, typer.Argument(help="customers or purchases")],
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    actor: Annotated[str, typer.Option(help="Recorded as who made the change.")] = "cli",
) -> None:
    """Import a CSV file into profile's database (events follow through the outbox).
    Exits 1 when rows were rejected, 2 when the file was refused whole."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    use_project_environment()
    from shared.db import create_engine, session_factory

    importers = importlib.import_module("services.profile.imports").IMPORTERS
    if kind not in importers:
        raise typer.BadParameter(f"one of {', '.join(importers)}", param_hint="KIND")
    settings = service_settings("profile")

    async def run() -> Any:
        engine = create_engine(settings.database_url)
        try:
            with Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                console=console,
            ) as progress:
                task = progress.add_task(f"importing {kind}", total=file.stat().st_size)

                async def chunks() -> Any:
                    with file.open("rb") as stream:
                        while chunk := stream.read(1 << 20):
                            progress.update(task, advance=len(chunk))
                            yield chunk

                return await importers[kind].run(
                    session_factory(engine),
                    chunks(),
                    actor=actor,
                    base_currency=settings.base_currency,
                )
        finally:
            await engine.dispose()

    from shared.errors import ProblemError

    try:
        report = asyncio.run(run())
    except ProblemError as exc:
        console.print(f"[red]{exc.detail}[/]")
        raise typer.Exit(2) from exc
    out = Console()
    out.print(
        f"rows {report.rows}: accepted {report.accepted}, skipped {report.skipped} "
        f"(already imported), rejected {report.rejected}"
    )
    for error in report.errors[:20]:
        out.print(f"  line {error.line}: {error.field}: {error.reason}")
    if report.rejected > 20:
        out.print(f"  ... and {report.rejected - 20} more")
    if report.rejected:
        raise typer.Exit(1)


dlq_app = typer.Typer(help="Dead letters: the events consumers gave up on.")
app.add_typer(dlq_app, name="dlq")


@dlq_app.command("list")
def dlq_list(
    topic: Annotated[
        list[str] | None,
        typer.Option("--topic", "-t", help="Only these event types (e.g. purchase.recorded)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """Show every dead letter: where it lies, the event, the consumer group and its error."""
    from shared import dlq

    settings = _broker_settings()
    letters = _on_broker(settings, dlq.read_dead_letters(settings, _dlq_topics(settings, topic)))
    out = Console(width=None if sys.stdout.isatty() else 240)
    if as_json:
        for letter in letters:
            out.print_json(
                json.dumps(
                    {
                        "where": letter.where,
                        "original_topic": letter.original_topic,
                        "event_id": letter.event_id,
                        "event_type": letter.event_type,
                        "consumer_group": letter.headers.get("x-consumer-group"),
                        "attempts": letter.headers.get("x-attempts"),
                        "error": letter.headers.get("x-error"),
                        "replayable": dlq.replayable(letter),
                    }
                ),
                indent=None,
            )
        return
    table = Table(title=f"{len(letters)} dead letters")
    for column in ("where", "event", "type", "group", "attempts"):
        table.add_column(column, no_wrap=True)
    table.add_column("error", no_wrap=True, overflow="ellipsis")
    for letter in letters:
        error = (letter.headers.get("x-error") or "").replace("\\n", "\n").splitlines()
        table.add_row(
            letter.where,
            letter.event_id or "(not an event)",
            letter.event_type or "",
            letter.headers.get("x-consumer-group", ""),
            letter.headers.get("x-attempts", ""),
            error[0] if error else "",
        )
    out.print(table)


@dlq_app.command("replay")
def dlq_replay(
    event_id: Annotated[
        list[str] | None, typer.Option("--event-id", "-e", help="Replay these events.")
    ] = None,
    everything: Annotated[
        bool, typer.Option("--all", help="Replay every dead letter that is an event.")
    ] = False,
    topic: Annotated[
        list[str] | None,
        typer.Option("--topic", "-t", help="Only these event types (e.g. purchase.recorded)."),
    ] = None,
) -> None:
    """Send dead letters back to the topics they came from. Consumers drop an event they
    have applied already, so a replay never applies one twice."""
    from shared import dlq

    if not event_id and not everything:
        raise typer.BadParameter("name events with --event-id, or pass --all")
    settings = _broker_settings()
    letters = _on_broker(settings, dlq.read_dead_letters(settings, _dlq_topics(settings, topic)))
    if event_id:
        wanted = set(event_id)
        chosen = [letter for letter in letters if letter.event_id in wanted]
        missing = wanted - {letter.event_id for letter in chosen}
        if missing:
            console.print(f"[red]not in a dead-letter topic: {', '.join(sorted(missing))}[/]")
            raise typer.Exit(1)
    else:
        chosen = [letter for letter in letters if dlq.replayable(letter)]
        skipped = len(letters) - len(chosen)
        if skipped:
            console.print(f"{skipped} dead letters are not events and stay where they are")
    sent = _on_broker(settings, dlq.replay(settings, chosen))
    Console().print(f"replayed {sent} dead letters")


keys_app = typer.Typer(
    help="API keys of `crm up` (kept in the data folder's api-keys.json; in production "
    "the keys are CRM_API_KEYS, from your secret store)."
)
app.add_typer(keys_app, name="keys")
ROLES = ("admin", "account_manager", "analyst", "agent")


def _local_keys_file() -> Path:
    if os.environ.get("CRM_API_KEYS", "").strip():
        console.print(
            "[red]The keys come from CRM_API_KEYS here: add or list them where it is set.[/]"
        )
        raise typer.Exit(2)
    folder = Path(os.environ.get("CRM_DATA_DIR") or project_data_dir()).resolve()
    load_or_create_api_keys(folder)  # the admin key first, as `crm up` would make it
    return folder / "api-keys.json"


@keys_app.command("add")
def keys_add(
    user: Annotated[str, typer.Option("--user", help="Who the key stands for (e.g. mia).")],
    role: Annotated[
        list[str], typer.Option("--role", help=f"One of {', '.join(ROLES)}; repeatable.")
    ],
) -> None:
    """Make a key for a user with these roles (an account manager sees their own
    customers alone); printed once. `crm up` reads the keys when it starts."""
    unknown = sorted(set(role) - set(ROLES))
    if unknown or not user.strip():
        console.print(
            f"[red]Unknown role {', '.join(unknown)}: choose from {', '.join(ROLES)}.[/]"
            if unknown
            else "[red]--user must name someone.[/]"
        )
        raise typer.Exit(2)
    keys_file = _local_keys_file()
    keys = json.loads(keys_file.read_text())
    key = secrets.token_urlsafe(24)
    keys[key] = {"roles": sorted(set(role)), "user": user.strip()}
    keys_file.write_text(json.dumps(keys, indent=2))
    keys_file.chmod(0o600)
    Console().print(f"API key for {user.strip()} ({', '.join(sorted(set(role)))}): {key}")
    console.print("Restart `crm up` (or `make up`) for the services to accept it.")


@keys_app.command("list")
def keys_list() -> None:
    """The local keys: who, which roles, and the key's first characters."""
    keys = json.loads(_local_keys_file().read_text())
    table = Table("key", "user", "roles")
    for key, grant in keys.items():
        table.add_row(f"{key[:4]}...", grant.get("user", ""), ", ".join(grant.get("roles", [])))
    Console().print(table)


topics_app = typer.Typer(help="Topics as infrastructure: one declaration, applied or rendered.")
app.add_typer(topics_app, name="topics")


@topics_app.command("apply")
def topics_apply(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only say what is missing or differs.")
    ] = False,
) -> None:
    """Create every declared topic and its .dlq that is missing (partitions, replication
    factor, retention, min.insync.replicas from the settings) and report what differs on
    those that exist (nothing existing is changed). Exits 1 while something differs or,
    with --dry-run, is missing."""
    from shared.topics import apply_topics, declared_topics

    settings = _broker_settings()
    missing, differences = _on_broker(settings, apply_topics(settings, create=not dry_run))
    declared = len(declared_topics(settings))
    verb = "missing" if dry_run else "created"
    console.print(
        f"{declared} topics declared on {settings.kafka_bootstrap}: {len(missing)} {verb}, "
        f"{len(differences)} difference(s)"
    )
    for name in missing:
        console.print(f"  {verb}: {name}")
    for difference in differences:
        console.print(
            f"  [yellow]{difference.topic}[/]: {difference.what} is {difference.found}, "
            f"declared {difference.declared}"
        )
    if differences or (dry_run and missing):
        raise typer.Exit(1)


@topics_app.command("manifest")
def topics_manifest(
    cluster: Annotated[str, typer.Option(help="The Strimzi Kafka cluster's name.")] = "crm",
    namespace: Annotated[str, typer.Option(help="The namespace of the resources.")] = "kafka",
) -> None:
    """Print the declaration as Strimzi KafkaTopic resources (deploy/k8s/base/topics.yaml), for
    Apache Kafka unless CRM_KAFKA_BROKER says otherwise."""
    from shared.topics import strimzi_manifest

    os.environ.setdefault("CRM_KAFKA_BROKER", "kafka")
    sys.stdout.write(strimzi_manifest(_broker_settings(), cluster, namespace))


@topics_app.command("asyncapi")
def topics_asyncapi() -> None:
    """Print the AsyncAPI 3.0 document of every topic and its events (docs/asyncapi.yaml)."""
    from importlib.metadata import version

    from shared.asyncapi import asyncapi_yaml

    sys.stdout.write(asyncapi_yaml(version("crm-retention")))


def _broker_settings() -> ServiceSettings:
    """The broker and topic prefix every service uses (read as profile reads them)."""
    use_project_environment()
    return service_settings("profile")


def _on_broker(settings: ServiceSettings, work: Coroutine[Any, Any, T]) -> T:
    """Run `work` against Kafka; one line, not a traceback, when Kafka does not answer."""
    from aiokafka.errors import KafkaError

    try:
        return asyncio.run(work)
    except (KafkaError, OSError, TimeoutError) as exc:
        console.print(
            f"[red]Kafka at {settings.kafka_bootstrap} did not answer ({exc!r})[/]: is it "
            "running (`make up`)? CRM_KAFKA_BOOTSTRAP names another"
        )
        raise typer.Exit(1) from None


def _dlq_topics(settings: ServiceSettings, event_types: list[str] | None) -> list[str] | None:
    from shared.events import CATALOG, dlq_topic

    if not event_types:
        return None
    unknown = [name for name in event_types if name not in CATALOG]
    if unknown:
        raise typer.BadParameter(f"unknown event types: {', '.join(unknown)}", param_hint="--topic")
    return [dlq_topic(settings.topic(name)) for name in event_types]


def _safe_url(url: str) -> str:
    """A database URL without its password, for printing."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        credentials, host = rest.rsplit("@", 1)
        user = credentials.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}" if ":" in credentials else url
    return url


def _wait_ready(
    urls: dict[str, str], processes: dict[str, subprocess.Popen[bytes]], timeout_s: float
) -> None:
    deadline = time.monotonic() + timeout_s
    pending = dict(urls)
    with httpx.Client(timeout=2) as client:
        while pending and time.monotonic() < deadline:
            for name, base in list(pending.items()):
                if processes[name].poll() is not None:
                    raise RuntimeError(f"{name} exited with {processes[name].returncode}")
                try:
                    if client.get(f"{base}/readyz").status_code == 200:
                        pending.pop(name)
                except httpx.HTTPError:
                    pass
            time.sleep(0.2)
    if pending:
        raise RuntimeError(f"not ready within {timeout_s:.0f}s: {', '.join(pending)}")


@app.command()
def up(
    kafka: Annotated[
        str | None,
        typer.Option(help="Use this Kafka (host:port) instead of starting the embedded broker."),
    ] = None,
    broker_port: Annotated[int, typer.Option(help="Port of the embedded broker.")] = 9092,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            envvar="CRM_DATA_DIR",
            help="Where SQLite files and keys live (default: the project's .crm folder).",
        ),
    ] = None,
    ready_timeout: Annotated[float, typer.Option(help="Seconds to wait for /readyz.")] = 60,
) -> None:
    """Start the broker and all four services; Ctrl-C stops everything, broker last.

    Database URLs come from CRM_<SERVICE>_DATABASE_URL (SQLite files in the data folder
    by default); ports from CRM_<SERVICE>_PORT (8001-8004 by default).
    """
    data_dir, admin_key = use_project_environment(data_dir)
    # Read once: databases and ports (the broker's address is set below, and read again
    # by the topic step and by each service process).
    configured = {name: service_settings(name) for name in SERVICES}
    for name, settings in configured.items():
        if port_open(settings.host, settings.port):
            console.print(
                f"[red]port {settings.port} ({name}) is taken[/]: stop what uses it or set "
                f"CRM_{name.upper()}_PORT"
            )
            raise typer.Exit(1)

    broker: EmbeddedBroker | None = None
    if kafka is None:
        if port_open("127.0.0.1", broker_port):
            console.print(
                f"[red]port {broker_port} is taken[/]: stop what uses it or pass --broker-port"
            )
            raise typer.Exit(1)
        broker = EmbeddedBroker(port=broker_port)
        log_file = (data_dir / "broker.log").open("ab")
        broker.start(log=log_file)
        kafka = broker.bootstrap
        console.print(f"[green]broker[/] Tansu (embedded, in memory) on {kafka}")
    os.environ["CRM_KAFKA_BOOTSTRAP"] = kafka

    processes: dict[str, subprocess.Popen[bytes]] = {}
    stopping = False

    def stop_all(*_: object) -> None:
        nonlocal stopping
        if stopping:
            return
        stopping = True
        console.print("stopping services...")
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes.values():
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
        if broker is not None:
            broker.stop()
            console.print("broker stopped")

    signal.signal(signal.SIGTERM, _interrupt)
    try:
        asyncio.run(ensure_platform_topics(service_settings("profile")))
        for name, settings in configured.items():
            asyncio.run(
                migrate_database(
                    settings.database_url, service_module(name).DEFINITION.migrations_dir
                )
            )
        urls: dict[str, str] = {}
        for name, settings in configured.items():
            log_path = data_dir / f"{name}.log"
            processes[name] = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                [sys.executable, "-m", "shared.cli", "serve", name],
                stdout=log_path.open("ab"),
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
            )
            urls[name] = f"http://{settings.host}:{settings.port}"
        _wait_ready(urls, processes, ready_timeout)
        _print_summary(urls, kafka, data_dir, admin_key)
        while all(process.poll() is None for process in processes.values()):
            time.sleep(0.5)
        dead = [name for name, process in processes.items() if process.poll() is not None]
        console.print(f"[red]{', '.join(dead)} stopped unexpectedly[/]; see {data_dir}/*.log")
        raise typer.Exit(1)
    except KeyboardInterrupt:
        pass
    except RuntimeError as exc:
        console.print(f"[red]{exc}[/]; logs are in {data_dir}")
        raise typer.Exit(1) from exc
    finally:
        stop_all()


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM stops `crm up` the way Ctrl-C does."""
    raise KeyboardInterrupt


def _print_summary(urls: dict[str, str], kafka: str, data_dir: Path, admin_key: str | None) -> None:
    table = Table(title="crm is up")
    table.add_column("service")
    table.add_column("URL")
    table.add_column("API docs")
    for name, base in urls.items():
        table.add_row(name, base, f"{base}/docs")
    out = Console()
    out.print(table)
    out.print(f"Kafka: {kafka}    data and logs: {data_dir}")
    if admin_key:
        out.print(f"Admin API key: [bold]{admin_key}[/]  (kept in {data_dir / 'api-keys.json'})")
        out.print(
            f'Try: curl -H "Authorization: Bearer {admin_key}" {urls["profile"]}/v1/customers'
        )
    else:
        out.print("API keys: from CRM_API_KEYS")
    out.print("Ctrl-C stops everything.")


if __name__ == "__main__":
    app()
