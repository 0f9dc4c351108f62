"""CSV imports: streamed, validated per row with line numbers, idempotent, and from the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import httpx
import orjson
import pytest
import sqlalchemy as sa

from services.profile.app import create_app
from services.profile.imports import IMPORTERS, purchase_event_json
from services.profile.schemas import PurchaseCreate
from services.profile.settings import ProfileSettings
from shared.broker import EmbeddedBroker
from shared.db import create_engine, session_factory
from shared.events import PurchaseRecorded
from shared.outbox import event_json
from shared.settings import project_data_dir
from tests.conftest import ADMIN, API_KEYS, MANAGER, running, service_settings
from tests.profile.helpers import create_customer, events, query

CSV = {**ADMIN, "content-type": "text/csv"}

CUSTOMERS = (
    "\ufeffexternal_ref,name,kind,region,stage,consent_sms,referred_by_ref,credit_limit\r\n"
    "C-1,Songhua Dairy,company,north,cooperating,granted,,100000.00\r\n"
    'C-2,"Li, Wei",person,south,,,C-1,\r\n'
    "C-3,Bad Kind,robot,north,,,,\r\n"
    ",No Ref,company,,,,,\r\n"
    "C-5,Too,many,columns,here,x,y,z,w\r\n"
    "C-6,Unknown Referrer,company,,,,C-404,\r\n"
)


async def test_customer_import_reports_every_row_and_is_idempotent(
    profile: httpx.AsyncClient, profile_db: str
) -> None:
    response = await profile.post("/v1/imports/customers", content=CUSTOMERS.encode(), headers=CSV)
    assert response.status_code == 200, response.text
    report = response.json()
    assert (report["rows"], report["accepted"], report["skipped"], report["rejected"]) == (
        6,
        2,
        0,
        4,
    )
    assert [(e["line"], e["field"]) for e in report["errors"]] == [
        (4, "kind"),
        (5, "external_ref"),
        (6, "*"),
        (7, "referred_by_ref"),
    ]
    listed = (await profile.get("/v1/customers", headers=ADMIN)).json()["items"]
    by_ref = {c["external_ref"]: c for c in listed}
    assert set(by_ref) == {"C-1", "C-2"}
    assert by_ref["C-2"]["name"] == "Li, Wei"
    assert by_ref["C-2"]["referred_by"] == by_ref["C-1"]["id"]
    assert by_ref["C-1"]["consent"] == {"sms": "granted"}
    assert by_ref["C-1"]["credit"]["limit"] == "100000.00"
    assert len(await events(profile_db, "customer.created")) == 2

    again = (
        await profile.post("/v1/imports/customers", content=CUSTOMERS.encode(), headers=CSV)
    ).json()
    assert (again["accepted"], again["skipped"], again["rejected"]) == (0, 2, 4)
    assert len(await events(profile_db, "customer.created")) == 2
    audit = await query(profile_db, "SELECT actor, action FROM audit_log WHERE action='imported'")
    assert {tuple(a) for a in audit} == {("root", "imported")}


async def test_purchase_import_keeps_history_and_skips_what_it_has(
    profile: httpx.AsyncClient, profile_db: str
) -> None:
    customer = await create_customer(profile, external_ref="ERP-7")
    other = await create_customer(profile, name="By Id")
    text = (
        "customer_ref,customer_id,external_id,amount,currency,quantity,category,purchased_at\n"
        "ERP-7,,INV-1,1299.50,CNY,2,formula,2015-03-01T08:00:00Z\n"
        f',{other["id"]},INV-1,10.00,CNY,,"tins, large\nseries",2024-01-01T00:00:00+08:00\n'
        "ERP-7,,INV-1,1299.50,CNY,2,formula,2015-03-01T08:00:00Z\n"
        "ERP-7,,INV-2,abc,CNY,1,,2020-01-01T00:00:00Z\n"
        "ERP-7,,INV-3,5.00,CNY,-1,,2020-01-01T00:00:00Z\n"
        "ERP-7,,INV-4,5.00,USD,1,,2020-01-01T00:00:00Z\n"
        "NOPE,,INV-5,5.00,CNY,1,,2020-01-01T00:00:00Z\n"
        ",not-a-uuid,INV-6,5.00,CNY,1,,2020-01-01T00:00:00Z\n"
        "ERP-7,,INV-7,5.00,CNY,1,,2999-01-01T00:00:00Z\n"
        "ERP-7,,,7.00,CNY,1,,2020-01-01T00:00:00Z\n"
        'ERP-7,,INV-8,"7.00,CNY,1,,2020-01-01T00:00:00Z\n'
    )
    report = (
        await profile.post("/v1/imports/purchases", content=text.encode(), headers=CSV)
    ).json()
    assert (report["rows"], report["accepted"], report["skipped"], report["rejected"]) == (
        11,
        3,
        1,
        7,
    )
    assert [(e["line"], e["field"]) for e in report["errors"]] == [
        (6, "amount"),
        (7, "quantity"),
        (8, "currency"),
        (9, "customer_ref"),
        (10, "customer_id"),
        (11, "purchased_at"),
        (13, "*"),
    ]
    assert "unterminated" in report["errors"][-1]["reason"]
    mine = (await profile.get(f"/v1/customers/{customer['id']}/purchases", headers=ADMIN)).json()[
        "items"
    ]
    assert [(p["external_id"][:7], p["amount"], p["purchased_at"][:10]) for p in mine] == [
        ("INV-1", "1299.50", "2015-03-01"),
        ("csv:12:", "7.00", "2020-01-01"),  # no id given: one from its line and content
    ]
    theirs = (await profile.get(f"/v1/customers/{other['id']}/purchases", headers=ADMIN)).json()[
        "items"
    ]
    assert theirs[0]["category"] == "tins, large\nseries"
    assert theirs[0]["purchased_at"] == "2023-12-31T16:00:00Z"
    recorded = await events(profile_db, "purchase.recorded")
    assert len(recorded) == 3 and recorded[0]["data"]["purchased_at"] == "2015-03-01T08:00:00Z"
    # The import encodes event data itself: it must be what the catalog model would give.
    for event in recorded:
        model = PurchaseRecorded.model_validate(event["data"])
        assert model.model_dump(mode="json") == event["data"]

    again = (await profile.post("/v1/imports/purchases", content=text.encode(), headers=CSV)).json()
    # Every row is recognised, the one without an external id by its line and content.
    assert (again["accepted"], again["skipped"]) == (0, 4)
    assert len(await events(profile_db, "purchase.recorded")) == 3
    # The same purchase on another line, or a changed one, is new.
    moved = text.replace(
        "ERP-7,,,7.00", "ERP-7,,,7.00,CNY,1,,2020-01-01T00:00:00Z\nERP-7,,,7.00", 1
    )
    changed = text.replace("ERP-7,,,7.00", "ERP-7,,,8.00", 1)
    for variant, skipped in ((moved, 4), (changed, 3)):
        report = (
            await profile.post("/v1/imports/purchases", content=variant.encode(), headers=CSV)
        ).json()
        assert (report["accepted"], report["skipped"]) == (1, skipped)


async def test_bad_files_are_refused_whole_and_write_nothing(
    profile: httpx.AsyncClient, profile_db: str
) -> None:
    cases = [
        b"",
        b"name,colour\nA,red\n",
        b"external_ref,name\nX,Y\n",
        b"amount,amount,currency,purchased_at\n",
    ]
    for body, kind in zip(cases, ["customers", "customers", "customers", "purchases"], strict=True):
        response = await profile.post(f"/v1/imports/{kind}", content=body, headers=CSV)
        assert response.status_code == 422, (body, response.text)
        assert response.headers["content-type"] == "application/problem+json"
    assert (await query(profile_db, "SELECT count(*) AS n FROM customers"))[0].n == 0
    denied = await profile.post(
        "/v1/imports/customers",
        content=CUSTOMERS.encode(),
        headers={**MANAGER, "content-type": "text/csv"},
    )
    assert denied.status_code == 403


async def test_a_form_upload_imports_like_a_raw_body_and_other_types_are_415(
    profile: httpx.AsyncClient, profile_db: str
) -> None:
    form = await profile.post(
        "/v1/imports/customers",
        files={"file": ("customers.csv", CUSTOMERS.encode(), "text/csv")},
        headers=ADMIN,
    )
    assert form.status_code == 200, form.text
    assert (form.json()["accepted"], form.json()["rejected"]) == (2, 4)
    raw = await profile.post("/v1/imports/customers", content=CUSTOMERS.encode(), headers=CSV)
    assert (raw.json()["accepted"], raw.json()["skipped"]) == (0, 2)  # the same file again
    for content_type in ("application/json", "application/x-www-form-urlencoded"):
        refused = await profile.post(
            "/v1/imports/customers",
            content=CUSTOMERS.encode(),
            headers={**ADMIN, "content-type": content_type},
        )
        assert refused.status_code == 415, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
    no_file = await profile.post(
        "/v1/imports/customers",
        files={"attachment": ("x.csv", b"a,b\n", "text/csv")},
        headers=ADMIN,
    )
    assert no_file.status_code == 422
    assert no_file.json()["errors"][0]["field"] == "file"
    assert (await query(profile_db, "SELECT count(*) AS n FROM customers"))[0].n == 2


async def test_an_endless_line_is_one_rejected_row_and_never_held_whole(
    profile: httpx.AsyncClient, profile_db: str
) -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b"external_ref,name,kind\nOK-1,Fine,company\nLONG,"
        for _ in range(40):  # 2.5 MiB without a newline: over the 64 KiB a record may be
            yield b"x" * 65536
        yield b",company\nOK-2,Also fine,company"

    response = await profile.post("/v1/imports/customers", content=body(), headers=CSV)
    report = response.json()
    assert (report["rows"], report["accepted"], report["rejected"]) == (3, 2, 1), report
    assert report["errors"] == [{"line": 3, "field": "*", "reason": "record is over 64 KiB"}]


async def test_a_cell_with_a_nul_character_is_one_rejected_row(
    profile: httpx.AsyncClient, profile_db: str
) -> None:
    csv = b"external_ref,name,kind\nN-1,Ac\x00me,company\nN-2,Fine,company\n"
    response = await profile.post("/v1/imports/customers", content=csv, headers=CSV)
    report = response.json()
    assert (report["rows"], report["accepted"], report["rejected"]) == (2, 1, 1), report
    assert report["errors"] == [
        {"line": 2, "field": "name", "reason": "contains a NUL character (U+0000)"}
    ]
    assert (await query(profile_db, "SELECT count(*) AS n FROM customers"))[0].n == 1


async def test_an_upload_may_be_larger_than_a_json_body(
    broker: EmbeddedBroker, profile_db: str, topic_prefix: str
) -> None:
    settings = service_settings(
        ProfileSettings,
        database_url=profile_db,
        bootstrap=broker.bootstrap,
        prefix=topic_prefix,
        max_body_bytes=4096,
        max_upload_bytes=1_000_000,
    )
    rows = "".join(f"R-{n},Customer {n},company\n" for n in range(500))
    csv = f"external_ref,name,kind\n{rows}".encode()
    assert 4096 < len(csv) < 1_000_000
    async with running(create_app(settings)) as client:
        imported = await client.post("/v1/imports/customers", content=csv, headers=CSV)
        assert imported.status_code == 200, imported.text
        assert imported.json()["accepted"] == 500
        too_big = await client.post("/v1/imports/customers", content=csv * 200, headers=CSV)
        assert too_big.status_code == 413
        json_body = await client.post(
            "/v1/customers", json={"name": "x" * 5000, "kind": "company"}, headers=ADMIN
        )
        assert json_body.status_code == 413


async def test_large_upload_is_streamed_in_batches(
    profile: httpx.AsyncClient, profile_db: str
) -> None:
    await create_customer(profile, external_ref="BIG")
    rows = 5000  # more than two batches

    async def body() -> AsyncIterator[bytes]:
        yield b"customer_ref,external_id,amount,currency,purchased_at\n"
        for start in range(0, rows, 1000):
            yield "".join(
                f"BIG,P{n},{n % 50 + 1}.25,CNY,2025-06-01T00:00:00Z\n"
                for n in range(start, start + 1000)
            ).encode()

    report = (await profile.post("/v1/imports/purchases", content=body(), headers=CSV)).json()
    assert (report["accepted"], report["rejected"]) == (rows, 0)
    [count] = await query(profile_db, "SELECT count(*) AS n, sum(amount) AS total FROM purchases")
    assert count.n == rows
    assert count.total == sum((n % 50 + 1) * 100 + 25 for n in range(rows))


def test_cli_import_with_progress(tmp_path: Path, profile_db: str) -> None:
    csv_file = tmp_path / "customers.csv"
    csv_file.write_text(CUSTOMERS, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_")}
    env.update({"CRM_API_KEYS": json.dumps(API_KEYS), "CRM_PROFILE_DATABASE_URL": profile_db})
    done = subprocess.run(
        [sys.executable, "-m", "shared.cli", "import", "customers", str(csv_file)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stderr  # rows were rejected
    assert "accepted 2, skipped 0 (already imported), rejected 4" in done.stdout
    assert "line 4: kind" in done.stdout
    again = subprocess.run(
        [sys.executable, "-m", "shared.cli", "import", "customers", str(csv_file)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "accepted 0, skipped 2" in again.stdout


def test_the_cli_runs_from_any_folder_without_extra_variables(tmp_path: Path) -> None:
    """As after `make up`: no CRM_DEV_MODE, no keys given, started from another folder;
    the data folder (here given, by default the project's .crm) holds the databases."""
    elsewhere, data = tmp_path / "somewhere", tmp_path / "data"
    elsewhere.mkdir()
    good = elsewhere / "good.csv"
    good.write_text("external_ref,name,kind\nG-1,Good,company\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_")}
    env["CRM_DATA_DIR"] = str(data)

    def crm(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(Path(sys.executable).parent / "crm"), *args],
            cwd=elsewhere,
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    assert crm("migrate", "--service", "profile").returncode == 0
    done = crm("import", "customers", str(good))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "accepted 1" in done.stdout
    assert (data / "profile.db").exists() and (data / "api-keys.json").exists()
    bad = crm(
        "import",
        "customers",
        str(good),
        CRM_API_KEYS='{"short": {"roles": ["admin"], "user": "a"}}',
    )
    assert bad.returncode == 2
    assert "Traceback" not in bad.stderr
    [line] = [text for text in bad.stderr.splitlines() if text.strip()]
    assert "CRM_API_KEYS" in line and "16 characters" in line


def test_the_default_data_folder_is_the_projects_own() -> None:
    root = Path(__file__).resolve().parents[2]
    assert project_data_dir() == root / ".crm"


@pytest.mark.parametrize(
    "purchased_at",
    [
        "2026-11-24T12:00:00Z",
        "2026-11-24T12:00:01.123456Z",
        "2026-11-24T20:00:01.000005+08:00",
    ],
)
@pytest.mark.parametrize("optional", [{}, {"unit": "kg", "sku": "S-1", "external_id": "P-9"}])
def test_imported_purchase_event_is_the_models_own_dump(
    purchased_at: str, optional: dict[str, str]
) -> None:
    """Imports write `purchase.recorded` data without building the event model per row;
    once encoded it must be exactly what the model gives."""
    data = PurchaseCreate.model_validate(
        {"amount": "-12.50", "currency": "CNY", "quantity": "2.125", "purchased_at": purchased_at}
        | optional
    )
    purchase_id = uuid.uuid4()
    expected = PurchaseRecorded(purchase_id=purchase_id, **data.model_dump()).model_dump(
        mode="json"
    )
    assert orjson.loads(event_json(purchase_event_json(purchase_id, data))) == expected


async def test_free_items_are_purchases_through_the_api_and_the_import(
    profile: httpx.AsyncClient, profile_db: str
) -> None:
    """A zero amount is a real purchase (a free item, a sample): accepted and announced."""
    customer = await create_customer(profile, external_ref="FREE-1")
    posted = await profile.post(
        f"/v1/customers/{customer['id']}/purchases",
        json={"amount": "0", "currency": "CNY", "purchased_at": "2026-11-01T08:30:00Z"},
        headers=ADMIN,
    )
    assert posted.status_code == 201, posted.text
    text = (
        "customer_ref,customer_id,external_id,amount,currency,quantity,category,purchased_at\n"
        "FREE-1,,SAMPLE-1,0.00,CNY,3,samples,2026-11-02T08:00:00Z\n"
    )
    report = (
        await profile.post("/v1/imports/purchases", content=text.encode(), headers=CSV)
    ).json()
    assert (report["accepted"], report["rejected"]) == (1, 0), report
    amounts = [e["data"]["amount"] for e in await events(profile_db, "purchase.recorded")]
    assert len(amounts) == 2 and all(Decimal(str(amount)) == 0 for amount in amounts)


async def test_every_import_batch_commits_durably_before_the_relay_can_see_it(
    profile: httpx.AsyncClient, profile_db: str
) -> None:
    """The relay polls the outbox on its own: a batch committed without waiting for its
    WAL flush could be published and then lost in a crash. No statement of an import
    turns the wait off."""
    await create_customer(profile, external_ref="DUR")
    engine = create_engine(profile_db)
    statements: list[str] = []
    sa.event.listen(
        engine.sync_engine,
        "before_cursor_execute",
        lambda _c, _cur, statement, *_: statements.append(statement.lower()),
    )

    async def body() -> AsyncIterator[bytes]:
        yield b"customer_ref,amount,currency,purchased_at\n"
        yield b"".join(b"DUR,%d.00,CNY,2025-06-01T00:00:00Z\n" % n for n in range(1, 4500))

    try:
        report = await IMPORTERS["purchases"].run(
            session_factory(engine), body(), actor="test", base_currency="CNY"
        )
    finally:
        await engine.dispose()
    assert report.accepted == 4499
    assert statements  # the listener saw the import's own statements
    assert not any("synchronous_commit" in s for s in statements)
