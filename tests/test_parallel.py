"""Workers: the same numbers, bit for bit, in worker processes, threads or a Dask cluster."""

import concurrent.futures as cf
import itertools
import os
import time

import numpy as np
import pytest

import gradproof as gp
from helpers import TwoLayerNet, snapshot


@pytest.fixture(scope="module")
def case():
    net = TwoLayerNet(n_x=6, n_h=7, m=5, seed=11)
    grads = net.backward(net.params, bug="one element wrong")
    reference = gp.check(net.cost, net.params, grads)
    return net, grads, reference


def same_numbers(a: gp.Report, b: gp.Report) -> None:
    assert a.difference == b.difference
    for name in a.tensors:
        np.testing.assert_array_equal(a.numerical[name], b.numerical[name])
        assert a.tensors[name] == b.tensors[name]
    assert a.evaluations == b.evaluations


def test_two_worker_processes_give_bit_identical_results(case):
    net, grads, reference = case
    before = snapshot(net.params)
    report = gp.check(lambda p: net.cost(p), net.params, grads, executor=2)  # a lambda, a closure
    same_numbers(report, reference)
    assert [t.name for t in report.failing] == ["W1"]
    assert snapshot(net.params) == before


def test_a_thread_pool_gives_bit_identical_results(case):
    net, grads, reference = case
    with cf.ThreadPoolExecutor(3) as pool:
        report = gp.check(net.cost, net.params, grads, executor=pool)
    same_numbers(report, reference)


def test_sample_mode_on_workers_gives_the_same_result(case):
    net, grads, _ = case
    here = gp.check(net.cost, net.params, grads, mode="sample", k=5, seed=2)
    with cf.ThreadPoolExecutor(2) as pool:
        there = gp.check(net.cost, net.params, grads, mode="sample", k=5, seed=2, executor=pool)
    assert here.difference == there.difference and here.evaluations == there.evaluations


def test_cost_raising_in_a_worker_is_a_cost_error_with_its_coordinate(case):
    net, grads, _ = case
    x0 = net.params["b2"][3, 0]

    def breaks(p):
        if p["b2"][3, 0] < x0:
            raise ArithmeticError("negative bias")
        return net.cost(p)

    with (
        cf.ThreadPoolExecutor(2) as pool,
        pytest.raises(gp.CostError, match=r"at b2\[3, 0\] - h: negative bias") as info,
    ):
        gp.check(breaks, net.params, grads, executor=pool)
    assert isinstance(info.value.__cause__, ArithmeticError)


def _dies_mid_run(net: TwoLayerNet, after: int, marker: str | None = None):
    """A cost whose worker process dies at its ``after``-th evaluation (once, if ``marker``)."""
    main = os.getpid()
    calls = itertools.count(1)

    def cost(p):
        dies = os.getpid() != main and next(calls) == after
        if dies and (marker is None or not os.path.exists(marker)):
            if marker is not None:
                open(marker, "w").close()
            os._exit(3)  # the worker process dies mid-check
        return net.cost(p)

    return cost


def test_a_worker_that_dies_mid_run_is_retried_once(case, tmp_path):
    net, grads, reference = case
    cost = _dies_mid_run(net, after=100, marker=str(tmp_path / "died"))
    report = gp.check(cost, net.params, grads, executor=2)
    same_numbers(report, reference)
    assert (tmp_path / "died").exists()


def test_a_worker_that_keeps_dying_mid_run_is_a_clear_error_and_params_are_intact(case):
    net, grads, _ = case
    before = snapshot(net.params)
    main, x0 = os.getpid(), net.params["W2"][3, 3]

    def dies_on_w2(p):  # W2 is no worker's first chunk: W1 and b1 come first
        if os.getpid() != main and p["W2"][3, 3] != x0:
            os._exit(3)
        return net.cost(p)

    with pytest.raises(gp.WorkerError, match=r"failed twice.*params are intact"):
        gp.check(dies_on_w2, net.params, grads, executor=2)
    assert snapshot(net.params) == before


def test_workers_that_die_before_any_work_fail_once_with_the_likely_cause(case):
    net, grads, _ = case
    before = snapshot(net.params)
    started = time.perf_counter()
    with pytest.raises(gp.WorkerError, match=r"died before finishing any work.*executor=None"):
        gp.check(_dies_mid_run(net, after=1), net.params, grads, executor=2)
    assert time.perf_counter() - started < 5.0  # one failure, no restart storm
    assert snapshot(net.params) == before


def test_a_dask_cluster_gives_bit_identical_results(case):
    distributed = pytest.importorskip("distributed")
    net, grads, reference = case
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            silence_logs=40,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        report = gp.check(lambda p: net.cost(p), net.params, grads, executor=client.get_executor())
    same_numbers(report, reference)


def test_directional_mode_with_an_executor_says_where_it_ran(case):
    net, grads, _ = case
    with cf.ThreadPoolExecutor(2) as pool:
        report = gp.check(net.cost, net.params, grads, mode="directional", executor=pool)
    assert any("directional mode ran in this process" in w for w in report.warnings)
