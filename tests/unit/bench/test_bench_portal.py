"""`python -m bench portal` (bench/portal_page.py): the portal's warm pages on fakes and on moto,
with ingest's warm call from the same rounds, at a tiny scale. Keys only: no timing is judged."""

from __future__ import annotations

import json

import pytest

from bench import __main__ as bench
from bench import portal_page


@pytest.fixture(scope="module")
def portal_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, object], str]:
    out = tmp_path_factory.mktemp("bench") / "portal_results.json"
    argv = ["--cold-repeats", "0", "--rounds", "1", "--pages", "2", "--moto-pages", "1"]
    assert bench.portal_main(argv, out=out) == 0
    results = json.loads(out.read_text(encoding="utf-8"))
    return results, bench.portal_table(results)


def test_the_portal_section_reports_every_page_on_fakes_and_on_moto(portal_run: tuple[dict[str, object], str]) -> None:
    # GIVEN one round of 2 warm requests of each page on fakes and 1 on moto
    results, _ = portal_run
    portal = results["portal"]
    assert isinstance(portal, dict)
    # THEN the headline has the median and p95 of each page, the render apart, the moto figures
    headline = portal["warm_page"]
    for kind in portal_page.KINDS:
        assert set(headline[f"{kind}_ms"]) == {"median", "p95", "cpu_median"}
    assert set(headline["home_render_ms"]) == {"median", "p95"}
    for key in ("home_on_moto_ms", "home_on_moto_without_moto_ms", "home_estimate_on_lambda"):
        assert key in headline
    # AND every page's samples on fakes are the 2 asked for, with the Jinja2 render timed apart
    for kind in portal_page.KINDS:
        assert portal["fakes"]["pages"][kind]["wall"]["n"] == 2
        assert set(portal["fakes"]["pages"][kind]) == {"wall", "cpu", "render", "round_medians_ms"}
    # AND on moto moto's own share is taken out, and the page's DynamoDB calls are counted
    home = portal["moto"]["pages"]["home"]
    assert set(home) == {"wall", "cpu", "render", "moto", "wall_without_moto", "cpu_without_moto", "round_medians_ms"}
    assert any(name.startswith("dynamodb.") for name in portal["moto"]["aws_calls_per_page"]["home"])
    assert portal["fakes"]["aws_calls_per_page"]["home"] == {}  # the fakes reach no AWS


def test_the_portal_section_keeps_ingest_from_the_same_rounds_and_prints_a_table(
    portal_run: tuple[dict[str, object], str],
) -> None:
    results, table = portal_run
    # THEN ingest's warm call of the same rounds and the load are kept beside the portal's
    assert set(results) >= {"generated_at", "command", "machine", "ingest_us_per_conversion", "portal"}
    assert "single" in results["ingest_us_per_conversion"]  # type: ignore[operator]
    assert "cold_import_ms" not in results  # --cold-repeats 0: no layout built
    assert len(results["portal"]["load_average"]) == 2  # type: ignore[index]
    # AND the table names each page and the moto split
    for kind in portal_page.KINDS:
        assert f"portal {kind}" in table
    assert "moto's share" in table
