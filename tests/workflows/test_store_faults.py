"""A study against a flaky object store: with a fifth of the requests failing it completes
with every pair row exactly once, each with a value; with every request failing it stops at
once with an error naming the store, having written nothing."""
from __future__ import annotations

import pytest

from tests.faults import FaultProxy
from tests.workflows.test_study import _assert_complete_pairs, _pairs


pytestmark = pytest.mark.long  # storage-fault studies

@pytest.mark.ray
@pytest.mark.s3
def test_a_study_completes_exactly_when_a_fifth_of_store_requests_fail(tiny_checkpoints, tiny_layers, study_config,
                                                                        ray_local, s3_uri, s3_server,
                                                                        quick_retries) -> None:
    from layergw.store import ResultStore
    from workflows.study import run_study

    with FaultProxy(s3_server, share=0.2, seed=3) as proxy:
        flaky_uri = s3_uri.replace(s3_server, proxy.endpoint).replace("/prefix", "/flaky")
        cfg = study_config(tiny_checkpoints, flaky_uri, measures=["cka"], targets={"enabled": False})
        run_study(cfg, show_progress=False)
    assert proxy.failed >= 5  # the faults were really there, in the driver's and the tasks' requests
    run = ResultStore(s3_uri.replace("/prefix", "/flaky")).child(cfg.study, cfg.resolved_run_id)
    got = _pairs(run)
    _assert_complete_pairs(got, cfg, tiny_layers)
    assert got["value"].notna().all() and got["error"].isna().all()
    assert run.exists("report/index.html") and run.exists("groups.parquet")


@pytest.mark.ray
@pytest.mark.s3
def test_a_study_on_a_store_that_always_fails_stops_at_once_naming_it(tiny_checkpoints, study_config,
                                                                                 s3_uri, s3_server, quick_retries) -> None:
    from layergw.store import ResultStore, StoreError
    from workflows.study import run_study

    with FaultProxy(s3_server, share=1.0) as proxy:
        flaky_uri = s3_uri.replace(s3_server, proxy.endpoint)
        cfg = study_config(tiny_checkpoints, flaky_uri, measures=["cka"], targets={"enabled": False})
        with pytest.raises(StoreError) as info:
            run_study(cfg, show_progress=False)
    assert proxy.endpoint in str(info.value) and "s3://" in str(info.value) and "gave up after" in str(info.value)
    assert ResultStore(s3_uri).list_files() == []
