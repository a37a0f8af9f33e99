"""The whole accelerator in Amaranth's simulator: bit-exact against golden.integer + golden.spec, cycles == hw.cycles."""

import numpy as np
import pytest
from hwtest import job_tables, random_job, small_config

from golden import requantization, spec
from golden.errors import CodeRangeError, ConfigError, LevelTableError
from hw.bus import BusStep, gemm_steps, start_step, wait_step, write_step
from hw.config import ArrayConfig, preset
from hw.cycles import gemm_cycles, host_write_count
from hw.host import GemmJob, golden_outputs, job_writes, output_word_count
from hw.kinds import PE_KINDS
from hw.layout import OutputMode, Region
from hw.pysim_driver import simulate_jobs, simulate_steps


def run_and_check(cfg: ArrayConfig, jobs: list[GemmJob], held: dict | None = None) -> None:
    """``held``: job index -> the values its run finds in the output buffer."""
    results = simulate_jobs(cfg, jobs)
    for index, (job, result) in enumerate(zip(jobs, results, strict=True)):
        np.testing.assert_array_equal(result.outputs, golden_outputs(cfg, job, (held or {}).get(index)))
        assert result.cycles == gemm_cycles(cfg, *job.shape, pool=job.pool)
        assert result.busy_during_run


@pytest.mark.parametrize("kind", PE_KINDS)
def test_random_gemms_back_to_back(kind):
    """Requantized, raw and raw+ReLU runs on one instance: buffers persist, DONE accepts a new start."""
    cfg = small_config(kind)
    rng = np.random.default_rng(PE_KINDS.index(kind))
    jobs = [
        random_job(cfg, rng, 7, 24, 7),
        random_job(cfg, rng, 3, 5, 4, OutputMode.RAW),
        random_job(cfg, rng, 5, 1, 2, OutputMode.RAW, relu=True),
    ]
    run_and_check(cfg, jobs)


@pytest.mark.parametrize("kind", ["lcq", "lcq_product", "apot"])
def test_threshold_bank_output(kind):
    cfg = small_config(kind)
    rng = np.random.default_rng(11)
    job = random_job(cfg, rng, 6, 13, 5, OutputMode.THRESHOLD)
    acc = golden_outputs(cfg, GemmJob(job.act_codes, job.weight_codes, OutputMode.RAW, bias=job.bias,
                                      weight_table=job.weight_table, act_table=job.act_table))
    # thresholds spread over the reachable range, plus some beyond it on both sides (clipped by the host)
    lo, hi = spec.signed_range(cfg.requant.sum_bits)
    spread = np.sort(rng.integers(acc.min() - 3, acc.max() + 4, (5, cfg.threshold_count)), axis=1)
    spread[0, :2], spread[1, -2:] = lo - 100, hi + 100
    spread[2, 0], spread[3, -1] = -(1 << 62), 1 << 62  # beyond the threshold field itself: only the host's clip fits them
    run_and_check(cfg, [GemmJob(**{**job.__dict__, "thresholds": spread})])


@pytest.mark.parametrize("kind", ["int", "post_shared"])
def test_per_row_multiplier_override(kind):
    """ASQ: every output row (sample) brings its own multiplier, replacing the per-channel one."""
    cfg = small_config(kind)
    rng = np.random.default_rng(5)
    m = 7
    row_mantissa, row_shift = requantization.quantize_multiplier(rng.uniform(0.01, 0.5, m))
    run_and_check(cfg, [random_job(cfg, rng, m, 9, 6, row_mantissa=row_mantissa, row_shift=row_shift)])


@pytest.mark.parametrize("kind", ["int", "post_shared", "lcq"])
def test_residual_add_and_negated_channels(kind):
    """Shortcut operands from the RESIDUAL region, aligned per channel, with negated channels; runs with and without."""
    cfg = small_config(kind, residual_bits=6)
    rng = np.random.default_rng(6)
    lo, hi = spec.signed_range(cfg.residual_bits)
    jobs = []
    for m, k, n, mode in ((7, 24, 7, OutputMode.REQUANT), (5, 3, 4, OutputMode.RAW), (4, 9, 6, OutputMode.RAW)):
        shortcut = rng.integers(lo, hi, (m, n), endpoint=True)
        shortcut[0, 0], shortcut[-1, -1] = lo, hi
        mantissa, shift = requantization.quantize_multiplier(rng.uniform(0.5, 400.0, n))
        jobs.append(random_job(cfg, rng, m, k, n, mode, negate=rng.integers(0, 2, n), shortcut=shortcut,
                               shortcut_mantissa=mantissa, shortcut_shift=shift))
    jobs.append(random_job(cfg, rng, 6, 5, 5, OutputMode.RAW, negate=np.ones(5, int)))  # no shortcut: the tile bit is off
    run_and_check(cfg, jobs)
    totals = [golden_outputs(cfg, job) for job in jobs[1:3]]
    without = [golden_outputs(cfg, GemmJob(**{**job.__dict__, "shortcut": None})) for job in jobs[1:3]]
    assert all(np.any(a != b) for a, b in zip(totals, without, strict=True))  # the shortcut changed the sums


@pytest.mark.parametrize("kind", ["int", "post_shared"])
def test_global_average_pool(kind):
    """One row of requantized channel sums of relu(t): padded rows excluded, m blocks interleaved with n blocks."""
    cfg = small_config(kind, residual_bits=6, global_pool=True)
    rng = np.random.default_rng(8)
    jobs = []
    for m, k, n in ((7, 24, 7), (5, 3, 4), (1, 9, 2), (6, 1, 3)):
        job = random_job(cfg, rng, m, k, n, negate=rng.integers(0, 2, n), pool=True)
        mantissa, shift = requantization.quantize_multiplier(job.mantissa / 2.0 ** job.shift / m)
        jobs.append(GemmJob(**{**job.__dict__, "mantissa": mantissa, "shift": shift}))
    shortcut = rng.integers(-32, 32, (7, 5))
    jobs.append(random_job(cfg, rng, 7, 10, 5, pool=True, shortcut=shortcut, shortcut_mantissa=40000, shortcut_shift=12))
    jobs.append(random_job(cfg, rng, 7, 10, 5))  # and a plain run after the pooled ones
    run_and_check(cfg, jobs)
    pooled = [golden_outputs(cfg, job) for job in jobs[:-1]]
    assert all(p.shape == (1, job.shape[2]) for p, job in zip(pooled, jobs, strict=False))
    assert 0 < sum(np.count_nonzero(p) for p in pooled) < sum(p.size for p in pooled)
    with pytest.raises(ConfigError, match="global_pool"):
        job_writes(small_config(kind), GemmJob(**{**jobs[0].__dict__}))
    with pytest.raises(ConfigError, match="REQUANT or RAW"):
        job_writes(cfg, GemmJob(**{**jobs[0].__dict__, "row_mantissa": jobs[0].mantissa, "row_shift": jobs[0].shift}))


@pytest.mark.parametrize("kind", ["int", "lcq"])
def test_each_run_sets_its_output_width(kind):
    """One accelerator clips each REQUANT run (pooled too) at its own 2^out_bits - 1 and thresholds each
    THRESHOLD run into its own number of codes, back to back (the widths differ from run to run)."""
    cfg = small_config(kind, out_bits=8, min_out_bits=2, threshold_bank=True, threshold_out_bits=3,
                       global_pool=True, bias_bits=12)
    assert cfg.run_time_out_bits and cfg.threshold_count == 7
    rng = np.random.default_rng(21)
    tables = job_tables(cfg.datapath, cfg.datapath.random_tables(rng))
    n = 7
    bias = np.linspace(-300, 1500, n).astype(int)  # bias-only totals (zero activations) from below 0 to above 255
    zeros = np.zeros((5, 4), int), rng.choice(cfg.datapath.weight.legal_codes(), (4, n))

    def requant(bits, **extra):
        return GemmJob(*zeros, OutputMode.REQUANT, bias=bias, mantissa=1, shift=0, out_bits=bits, **tables, **extra)

    def threshold(bits):
        steps = np.sort(rng.integers(-400, 1600, (n, (1 << bits) - 1)), axis=1)
        return GemmJob(*zeros, OutputMode.THRESHOLD, bias=bias, thresholds=steps, out_bits=bits, **tables)

    jobs = [requant(2), requant(8), requant(5), requant(None), requant(3, pool=True), threshold(2), threshold(3),
            requant(2)]
    run_and_check(cfg, jobs)
    tops = [int(golden_outputs(cfg, job).max()) for job in jobs]
    assert tops[:5] == [3, 255, 31, 255, 7] and tops[-1] == 3  # every REQUANT run reaches its own clip
    assert tops[5] <= 3 and tops[6] <= 7 and tops[6] > 3
    with pytest.raises(ConfigError, match=r"out_bits=1 is not an output width of this config's REQUANT runs \(expected 2..8\)"):
        job_writes(cfg, requant(1))
    with pytest.raises(ConfigError, match=r"THRESHOLD runs \(expected 2..3\)"):
        job_writes(cfg, GemmJob(**{**threshold(3).__dict__, "out_bits": 4}))
    with pytest.raises(ConfigError, match="RAW run"):
        job_writes(cfg, GemmJob(*zeros, OutputMode.RAW, out_bits=4, **tables))
    with pytest.raises(LevelTableError, match=r"\(N, 2\^out_bits - 1\) = \(7, 3\)"):
        job_writes(cfg, GemmJob(**{**threshold(3).__dict__, "out_bits": 2}))
    fixed = small_config(kind)
    with pytest.raises(ConfigError, match=rf"expected {fixed.out_bits}..{fixed.out_bits}"):
        job_writes(fixed, GemmJob(*zeros, OutputMode.REQUANT, out_bits=2, **tables))


@pytest.mark.parametrize("kind", ["int", "lcq"])
def test_asq_barrier_holds_relu_t_and_requantizes_it(kind):
    """Pass 1 (pooled RAW): the output buffer holds relu(t), the host reads each channel's sum; pass 2 (zero
    operands, held): the held values requantized with new multipliers, with no host transfer of t."""
    cfg = small_config(kind, global_pool=True)
    rng = np.random.default_rng(12)
    jobs, held = [], {}
    for m, k, n in ((7, 24, 7), (4, 5, 3)):
        first = random_job(cfg, rng, m, k, n, OutputMode.RAW, negate=rng.integers(0, 2, n), pool=True)
        raw = GemmJob(**{**first.__dict__, "pool": False, "relu": True})
        mantissa, shift = requantization.quantize_multiplier(rng.uniform(0.5, 2.0, n) * first.mantissa / 2.0 ** first.shift)
        zero_weight = cfg.datapath.weight.legal_codes()[0]
        second = GemmJob(np.zeros((m, 1), int), np.full((1, n), zero_weight), OutputMode.REQUANT, mantissa=mantissa,
                         shift=shift, held=True, **tables_of(first))
        held[len(jobs) + 1] = golden_outputs(cfg, raw)
        jobs += [first, second]
    run_and_check(cfg, jobs + [random_job(cfg, rng, 5, 6, 4)], held)
    sums = golden_outputs(cfg, jobs[0])
    assert sums.shape == (1, 7) and np.array_equal(sums[0], held[1].sum(axis=0))
    codes = golden_outputs(cfg, jobs[1], held[1])
    assert 0 < np.count_nonzero(codes) < codes.size and codes.max() <= (1 << cfg.out_bits) - 1
    assert gemm_cycles(cfg, 7, 1, 7) == -(-7 // cfg.rows) * -(-7 // cfg.cols) * (cfg.rows + 1) + cfg.cols + cfg.rows + 5
    with pytest.raises(ConfigError, match="exactly for a held run"):
        golden_outputs(cfg, jobs[1])


def test_shortcut_validation():
    cfg = small_config("int", residual_bits=4)
    act, weight = np.zeros((2, 3), int), np.zeros((3, 2), int)
    with pytest.raises(ConfigError, match="residual_bits"):
        job_writes(small_config("int"), GemmJob(act, weight, shortcut=np.zeros((2, 2), int)))
    with pytest.raises(ConfigError, match="M x N"):
        job_writes(cfg, GemmJob(act, weight, shortcut=np.zeros((2, 3), int)))
    with pytest.raises(CodeRangeError, match="outside the 4-bit"):
        job_writes(cfg, GemmJob(act, weight, shortcut=np.full((2, 2), 8)))
    with pytest.raises(ConfigError, match="0/1"):
        job_writes(cfg, GemmJob(act, weight, negate=np.array([0, 2])))
    writes = job_writes(cfg, GemmJob(np.zeros((5, 3), int), np.zeros((3, 4), int), shortcut=np.ones((5, 4), int)))
    assert len(writes) == host_write_count(cfg, 5, 3, 4, shortcut=True)
    assert sum(w.region == Region.RESIDUAL for w in writes) == 5 * 2


def extreme_codes(cfg: ArrayConfig, rng, largest: bool):
    """(weight code, act code, tables) of the largest (or most negative) product the config allows."""
    datapath = cfg.datapath
    tables = job_tables(datapath, datapath.extreme_tables())
    products = spec.product_table(datapath, tables.get("weight_table"), tables.get("act_table"))
    index = np.argmax(products) if largest else np.argmin(products)
    weight_index, act_code = np.unravel_index(index, products.shape)
    weight_code = datapath.weight.legal_codes()[weight_index] if cfg.scheme != "int" else (
        weight_index - (1 << datapath.weight.bits) * (weight_index >> (datapath.weight.bits - 1)))
    return int(weight_code), int(act_code), tables


@pytest.mark.parametrize("kind", PE_KINDS)
def test_worst_case_accumulation_at_max_reduction(kind):
    """K = max_reduction copies of the extreme product reach the accumulator bound exactly, both signs."""
    cfg = small_config(kind, max_m=3, max_n=3)
    k = cfg.max_reduction
    lo, hi = cfg.datapath.product_range()
    assert spec.signed_bits_for(k * lo, k * hi) == cfg.accumulator_width
    rng = np.random.default_rng(1)
    jobs = []
    for largest in (True, False):
        weight_code, act_code, tables = extreme_codes(cfg, rng, largest)
        jobs.append(GemmJob(np.full((3, k), act_code), np.full((k, 3), weight_code), OutputMode.RAW, **tables))
    results = simulate_jobs(cfg, jobs)
    assert np.all(results[0].outputs == k * hi)
    assert np.all(results[1].outputs == k * lo)
    for job, result in zip(jobs, results, strict=True):
        np.testing.assert_array_equal(result.outputs, golden_outputs(cfg, job))


@pytest.mark.parametrize("kind", ["int", "pot", "post_shared", "lcq", "apot"])
def test_all_max_codes_zeros_and_alternating_signs(kind):
    cfg = small_config(kind)
    datapath = cfg.datapath
    rng = np.random.default_rng(2)
    tables = job_tables(datapath, datapath.extreme_tables())
    codes = datapath.weight.legal_codes()
    k = 16
    all_max = GemmJob(np.full((4, k), datapath.num_act_codes - 1), np.full((k, 5), codes.max()), OutputMode.RAW, **tables)
    zeros = GemmJob(np.zeros((5, k), int), rng.choice(codes, (k, 4)), OutputMode.RAW, bias=np.arange(4) - 2, **tables)
    # +x, -x, +x, -x ... along k: sums of an even count cancel exactly for the shift schemes and int with symmetric codes
    if cfg.scheme in ("pot", "post"):
        plus, minus = datapath.weight.pack_power(0, 1), datapath.weight.pack_power(1, 1)
    elif cfg.scheme == "int":
        plus, minus = 3, -3
    elif cfg.scheme == "apot":
        plus, minus = datapath.weight.apot.pack(np.array([9, -9]))
    else:
        plus, minus = 0, len(codes) - 1
    alternating = np.where(np.arange(k)[:, None] % 2 == 0, plus, minus) * np.ones((1, 3), int)
    alt = GemmJob(rng.integers(0, datapath.num_act_codes, (1, 1)) * np.ones((3, k), int), alternating, OutputMode.RAW, **tables)
    results = simulate_jobs(cfg, [all_max, zeros, alt])
    for job, result in zip([all_max, zeros, alt], results, strict=True):
        np.testing.assert_array_equal(result.outputs, golden_outputs(cfg, job))
    np.testing.assert_array_equal(results[1].outputs, np.broadcast_to(np.arange(4) - 2, (5, 4)))
    if cfg.scheme != "lcq":
        assert np.all(results[2].outputs == 0)


def test_requantizer_rounding_and_clipping_edges():
    """Ties round half up, shift 0, shifts beyond the product width, clipping at both ends (bias-only totals)."""
    cfg = small_config("int", max_n=7, cols=3, bias_bits=20)
    bias = np.array([3, 5, -3, 1000, -1000, 7, 12345])
    mantissa = np.array([1, 1, 1, 1, 1, 3, 40000])
    shift = np.array([1, 1, 1, 0, 0, 62, 20])
    job = GemmJob(np.zeros((2, 4), int), np.ones((4, 7), int), OutputMode.REQUANT, bias=bias, mantissa=mantissa, shift=shift)
    result = simulate_jobs(cfg, [job])[0]
    expected = golden_outputs(cfg, job)
    np.testing.assert_array_equal(result.outputs, expected)
    # 3/2 -> 2, 5/2 -> 3, -3/2 -> 0 (clip), 1000 -> 15 (clip), 0 after a shift of 62, 12345*40000/2^20 = 470.9 -> 15
    np.testing.assert_array_equal(expected[0], [2, 3, 0, 15, 0, 0, 15])


def test_done_stays_high_until_next_start_and_cycles_are_exact():
    cfg = small_config("pot")
    rng = np.random.default_rng(4)
    job = random_job(cfg, rng, 7, 3, 7)
    idle = BusStep(capture=True)  # one edge between the writes and the start
    after = BusStep(capture=np.ones(5, bool))  # five edges after done
    result = simulate_steps(cfg, [write_step(job_writes(cfg, job)), idle, start_step(cfg, job), wait_step(cfg, 7, 3, 7),
                                  after])
    before, *later = result.captures
    assert (before["busy"], before["done"]) == (0, 0)
    assert [(c["busy"], c["done"]) for c in later] == [(0, 1)] * 5
    assert result.busy_while_waiting == [True]
    assert result.waits == [gemm_cycles(cfg, 7, 3, 7)] == [3 * 4 * max(3, 3 + 1, 2) + 2 + 3 + 5]  # K < R + 1: padded


def test_a_run_is_write_start_wait_read():
    """The host protocol of one run (hw.bus.gemm_steps), which every driver executes."""
    cfg = small_config("int")
    job = random_job(cfg, np.random.default_rng(3), 5, 4, 4)
    writes, start, wait, read = gemm_steps(cfg, job)
    assert writes.rows == len(job_writes(cfg, job)) and writes.captures == 0
    assert (start.rows, start.value("start", 0), start.wait_limit) == (1, 1, None)
    assert wait.wait_limit >= gemm_cycles(cfg, 5, 4, 4) and wait.inputs == {}
    words = output_word_count(cfg, 5, 4)
    assert [read.value("rd_addr", row) for row in range(read.rows)] == [*range(words), 0]
    assert [read.captured(row) for row in range(read.rows)] == [False] + [True] * words


# ---- job validation (host side) -------------------------------------------------------------------


def test_job_validation_errors():
    cfg = small_config("lcq")
    rng = np.random.default_rng(0)
    good = random_job(cfg, rng, 3, 4, 3)
    with pytest.raises(ConfigError, match="K=25"):
        job_writes(cfg, GemmJob(np.zeros((2, 25), int), np.zeros((25, 2), int), **tables_of(good)))
    with pytest.raises(ConfigError, match="equal K"):
        job_writes(cfg, GemmJob(np.zeros((2, 3), int), np.zeros((4, 2), int), **tables_of(good)))
    with pytest.raises(LevelTableError, match="8 entries"):
        job_writes(cfg, GemmJob(good.act_codes, good.weight_codes, weight_table=good.weight_table[:-1], act_table=good.act_table))
    with pytest.raises(LevelTableError, match="map code 0 to 0"):
        job_writes(cfg, GemmJob(good.act_codes, good.weight_codes, weight_table=good.weight_table, act_table=good.act_table + 1))
    with pytest.raises(LevelTableError, match="shape"):
        job_writes(cfg, GemmJob(**{**good.__dict__, "mode": OutputMode.THRESHOLD, "thresholds": np.zeros((3, 3), int)}))
    with pytest.raises(LevelTableError, match="non-decreasing"):
        job_writes(cfg, GemmJob(**{**good.__dict__, "mode": OutputMode.THRESHOLD, "thresholds": np.arange(21)[::-1].reshape(3, 7)}))
    with pytest.raises(ConfigError, match="threshold_bank"):
        job_writes(small_config("int"), GemmJob(np.zeros((2, 2), int), np.zeros((2, 2), int), OutputMode.THRESHOLD))
    with pytest.raises(LevelTableError, match="need weight_table"):
        job_writes(cfg, GemmJob(good.act_codes, good.weight_codes))
    apot = small_config("apot")
    with pytest.raises(LevelTableError, match="apot jobs need act_table"):
        job_writes(apot, GemmJob(good.act_codes, good.weight_codes))
    with pytest.raises(ConfigError, match="weight_table given for a apot array"):
        job_writes(apot, GemmJob(good.act_codes, good.weight_codes, weight_table=good.weight_table, act_table=good.act_table))
    with pytest.raises(ConfigError, match="act_table given for a int array"):
        job_writes(small_config("int"), GemmJob(good.act_codes, good.weight_codes, act_table=good.act_table))


def tables_of(job: GemmJob) -> dict:
    return dict(weight_table=job.weight_table, act_table=job.act_table)


PRESET_NAMES = ["default", "postlut4-4x4", "pot4-4x4", "int4-4x4", "int8-4x4", "lcq4-4x4", "lcqprod2-4x4", "post4-8x8", "apot4-4x4"]


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_presets_on_a_moderate_tile(name):
    cfg = preset(name)
    rng = np.random.default_rng(len(name) + 1)
    run_and_check(cfg, [random_job(cfg, rng, 9, 70, 10)])


# ---- regression: the real presets on bigger tiles -------------------------------------------------


@pytest.mark.regress
@pytest.mark.parametrize("name", PRESET_NAMES)
def test_presets_on_large_tiles(name):
    cfg = preset(name)
    rng = np.random.default_rng(len(name))
    jobs = [random_job(cfg, rng, 37, 300, 21), random_job(cfg, rng, 13, cfg.max_reduction, 11, OutputMode.RAW)]
    if cfg.threshold_bank:
        jobs.append(random_job(cfg, rng, 9, 77, 13, OutputMode.THRESHOLD,
                               thresholds=np.sort(rng.integers(-3000, 3000, (13, cfg.threshold_count)), axis=1)))
    run_and_check(cfg, jobs)
