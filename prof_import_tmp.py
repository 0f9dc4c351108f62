import asyncio, cProfile, pstats, tempfile, time, sys
from pathlib import Path
from bench.imports import write_files, chunks, ROOT
from bench.common import new_database, drop_database
from services.profile.imports import IMPORTERS
from shared.db import create_engine, migrate, session_factory
async def main(rows, profile):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        customers, purchases = write_files(folder, rows)
        url = await new_database("postgresql", "import", folder)
        await migrate(url, ROOT / "services/profile/migrations")
        engine = create_engine(url); sessions = session_factory(engine)
        await IMPORTERS["customers"].run(sessions, chunks(customers), actor="b", base_currency="CNY")
        pr = cProfile.Profile()
        t = time.perf_counter()
        if profile: pr.enable()
        report = await IMPORTERS["purchases"].run(sessions, chunks(purchases), actor="b", base_currency="CNY")
        if profile: pr.disable()
        dt_ = time.perf_counter() - t
        print("rows/s", rows / dt_, report.accepted)
        await engine.dispose(); await drop_database(url)
        if profile: pstats.Stats(pr).sort_stats("tottime").print_stats(35)
asyncio.run(main(int(sys.argv[1]), sys.argv[2] == "1"))
