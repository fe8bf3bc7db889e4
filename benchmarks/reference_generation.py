"""Cost of reference generation: UNet sample-evaluations per query, seconds per query, peak memory.

Prints one table, every figure measured in this run (or extrapolated from one, and labelled so):

a. UNet sample-evaluations per query at the paper's defaults (K = 4, 100 DDIM steps, noise level
   1.0, guidance 5, 3 rounds), counted by a forward pre-hook on the UNet that adds each call's
   batch size, while the real command line (``main.py fit``) runs in-process on the tiny model
   (the count does not depend on the network's size; 300 mask steps per round, as the paper's,
   since the masks decide which later-round estimates coincide): for 1, 2 and 4 queries of one
   mixture in one run, then a second identical run (references found in the cache) and a run
   with only ``--model.lr 0.02`` changed (round 0 found, later rounds regenerated). The
   reference code makes 4,776 per query (ALGORITHM.md section 3).
b. Seconds and peak memory of reference generation with each backbone's full-size architecture
   and random weights (``python -m dgmo_pl.tiny DIR --backbone B --size S``; speed and memory do
   not depend on the weights' values; by default AudioLDM-S, AudioLDM 2 and Auffusion), on the
   demo mixture, one query, one round of K = 4: the wall time, the UNet's time per
   sample-evaluation and its work (GFLOP, counted by ``torch.utils.flop_counter`` on one call),
   and from them the seconds per query of the
   paper's procedure (3,588 sample-evaluations and 3 rounds of the rest) and of the reference
   code (4,776, the model loaded afresh for each query). On a CPU with a few DDIM steps these
   per-query figures are extrapolated; on CUDA the paper's 100 steps run for real (``--rounds 3``
   for the whole 3-round procedure, which then makes the per-query figure a measurement). Each
   setting runs in its own process, so each peak memory is its own: the resident set size peak
   on a CPU (``VmHWM`` on Linux, where ``getrusage`` would report the parent's peak; else
   ``resource.getrusage``), ``torch.cuda.max_memory_allocated`` on CUDA.
c. Milliseconds per Adam step of the mask optimisation inside Lightning's fit loop against a
   plain PyTorch loop doing the same step, side by side in this process, as a ratio, at 1 and at
   the default steps per loader batch, with and without the mask monitor
   (``benchmarks/mask_step_overhead.py``, which also runs on its own).

Usage::

    python benchmarks/reference_generation.py                   # CPU: counts + timing at 3 DDIM steps
    python benchmarks/reference_generation.py --threads 1 --cpu-ddim-steps 2
    python benchmarks/reference_generation.py --device cuda     # 100 steps; 32-true, bf16-mixed,
                                                                # bf16-true, each eager and compiled
    python benchmarks/reference_generation.py --device cuda --rounds 3 --precisions bf16-mixed --compile on
    python benchmarks/reference_generation.py --skip-counts --full-model models/audioldm-s-random
    python benchmarks/reference_generation.py --skip-counts --skip-overhead \
        --backbones audioldm:full-l,audioldm2:full-large

On a machine whose cores other processes also use, ``--threads 1`` avoids the slowdown of
PyTorch's CPU threads waiting on a descheduled sibling (it can exceed 10x on two shared cores).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from diffusers.utils import logging as diffusers_logging  # noqa: E402
from transformers.utils import logging as transformers_logging  # noqa: E402

from dgmo_pl.audio import frontend as fe  # noqa: E402
from dgmo_pl.cli import main as cli_main  # noqa: E402
from dgmo_pl.data import DEMO_MIXTURE, load_mixture  # noqa: E402
from dgmo_pl.diffusion.backbones import infer_backbone  # noqa: E402
from dgmo_pl.diffusion.references import GenerationConfig, ReferenceGenerator  # noqa: E402
from dgmo_pl.testing.tiny import builder, save_model, save_tiny_audioldm  # noqa: E402

sys.path.insert(0, str(REPO / "benchmarks"))
from common import MIB, peak_rss_mib  # noqa: E402
from mask_step_overhead import DEFAULT_STEPS_PER_BATCH, Loop, measure_overhead  # noqa: E402

#: The reference code's UNet sample-evaluations per query (ALGORITHM.md section 3).
REFERENCE_EVALUATIONS = 4776
#: This implementation's per query at the paper's defaults, one query per run: 3 x (99 x 4 + 100 x 8).
PAPER_EVALUATIONS = 3588
PAPER_ROUNDS = 3
PAPER_STEPS = 100
#: The full-size models timed by default (``--backbones``): backbone:size of ``python -m dgmo_pl.tiny``.
DEFAULT_BACKBONES = "audioldm:full,audioldm2:full,auffusion:full"
QUERIES = ["dog barking", "cat meowing", "church bell ringing", "man speaking"]


# --- a. counting sample-evaluations through the command line -----------------------------------


class EvaluationCounter:
    """Counts UNet sample-evaluations: a forward pre-hook adds each call's batch size."""

    def __init__(self) -> None:
        self.total = 0

    def hook(self, module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        """Forward pre-hook: add the batch size of the call's ``sample``."""
        sample = args[0] if args else kwargs["sample"]
        self.total += int(sample.shape[0])

    def attach(self, module: torch.nn.Module) -> None:
        """Count every call of ``module`` from now on."""
        module.register_forward_pre_hook(self.hook, with_kwargs=True)


@contextlib.contextmanager
def counting(counter: EvaluationCounter) -> Iterator[None]:
    """Within the block, every :class:`ReferenceGenerator` built has its UNet counted by ``counter``."""
    original = ReferenceGenerator.__init__

    @functools.wraps(original)
    def init(self: ReferenceGenerator, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        counter.attach(self.backbone.unet)

    ReferenceGenerator.__init__ = init  # type: ignore[method-assign]
    try:
        yield
    finally:
        ReferenceGenerator.__init__ = original  # type: ignore[method-assign]


def fit_args(tiny: Path, root: Path, queries: list[str], steps_per_round: int, *extra: str) -> list[str]:
    """``main.py fit`` arguments: paper defaults (configs/dgmo.yaml), tiny model, quiet."""
    query = ["--data.query", queries[0]] if len(queries) == 1 else ["--data.queries", json.dumps(queries)]
    return [
        "fit", "--config", str(REPO / "configs" / "dgmo.yaml"), "--data.model", str(tiny), *query,
        "--data.steps_per_round", str(steps_per_round), "--trainer.default_root_dir", str(root / "logs"),
        "--data.cache_dir", str(root / "refs"), "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false", *extra,
    ]  # fmt: skip


def count_fit(tiny: Path, root: Path, queries: list[str], steps_per_round: int, *extra: str) -> int:
    """UNet sample-evaluations of one in-process ``main.py fit`` run (its printout swallowed)."""
    counter = EvaluationCounter()
    with counting(counter), contextlib.redirect_stdout(io.StringIO()):
        cli_main(fit_args(tiny, root, queries, steps_per_round, *extra))
    return counter.total


@dataclass
class CountRow:
    """One measured count: what ran, its total, and how many queries it served."""

    what: str
    total: int
    queries: int


def measure_counts(tiny: Path, work: Path, query_counts: list[int], steps_per_round: int) -> list[CountRow]:
    """Sample-evaluations of runs with 1, 2, 4... queries, a repeat, and an lr-only change."""
    rows = []
    for n in query_counts:
        total = count_fit(tiny, work / f"q{n}", QUERIES[:n], steps_per_round)
        what = f"{n} {'query' if n == 1 else 'queries'} of one mixture, one run, {steps_per_round} mask steps/round"
        rows.append(CountRow(what, total, n))
    n = query_counts[min(1, len(query_counts) - 1)]
    root = work / f"q{n}"
    repeat = count_fit(tiny, root, QUERIES[:n], steps_per_round)
    rows.append(CountRow(f"the {n}-query run again, identical (same cache)", repeat, n))
    changed = count_fit(tiny, root, QUERIES[:n], steps_per_round, "--model.lr", "0.02")
    rows.append(CountRow(f"the {n}-query run with only --model.lr 0.02 (same cache)", changed, n))
    return rows


# --- b. timing and memory of the full-size model -------------------------------------------------


def called_unet(generator: ReferenceGenerator) -> torch.nn.Module:
    """The module the generator calls for noise: the UNet, or its ``torch.compile`` wrapper.

    Hooks go on the wrapper when compiled, so they run eagerly around the compiled call
    instead of being traced into it.
    """
    return generator.backbone.denoiser


class UNetTimer:
    """Counts sample-evaluations and sums the wall time of the UNet's calls (synchronised on CUDA)."""

    def __init__(self, module: torch.nn.Module, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.evaluations, self.seconds, self._start = 0, 0.0, 0.0
        module.register_forward_pre_hook(self._before, with_kwargs=True)
        module.register_forward_hook(self._after, with_kwargs=True)

    def _now(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    def _before(self, module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        sample = args[0] if args else kwargs["sample"]
        self.evaluations += int(sample.shape[0])
        self._start = self._now()

    def _after(self, module: torch.nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        self.seconds += self._now() - self._start

    def reset(self) -> None:
        """Forget the counts so far."""
        self.evaluations, self.seconds = 0, 0.0


@dataclass(frozen=True)
class Mode:
    """One timed setting of the full-size run."""

    precision: str
    compile: bool
    device: str
    ddim_steps: int
    rounds: int
    max_batch: int | None
    threads: int | None
    warmup: bool

    @property
    def name(self) -> str:
        """The backbone:size label of this model."""
        return f"{self.precision}, {'compiled' if self.compile else 'eager'}"


def demo_log_mel(spec: fe.SpectrogramConfig) -> torch.Tensor:
    """The demo mixture's log-mel in the layout of ``spec``, ``[1, 1, H, W]``."""
    mixture = load_mixture(DEMO_MIXTURE, spec)
    return fe.diffusion_log_mel(mixture.magnitude, fe.mel_filterbank(spec), spec)


def unet_gflop(generator: ReferenceGenerator, log_mel: torch.Tensor) -> float:
    """GFLOP of one UNet sample-evaluation at this log-mel's latent size, counted on one call."""
    from torch.utils.flop_counter import FlopCounterMode

    latents = generator.encode_mel(log_mel, 1, torch.Generator().manual_seed(0))
    condition, _ = generator.conditions([QUERIES[0]])
    with FlopCounterMode(display=False) as counter:
        generator._eps(latents, torch.tensor(501), condition)
    return counter.get_total_flops() / 1e9


def compiled_graphs() -> int:
    """Graphs ``torch.compile`` has compiled in this process so far."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def generate_rounds(generator: ReferenceGenerator, log_mel: torch.Tensor, steps: int, rounds: int) -> None:
    """Generate K = 4 references of one query ``rounds`` times (round r seeded with r)."""
    config = GenerationConfig(4, ddim_steps=steps)
    for r in range(rounds):
        generator.generate(log_mel, [QUERIES[0]], config, torch.Generator().manual_seed(r))


def time_mode(folder: str, mode: Mode) -> dict[str, Any]:
    """Load the full-size model under ``mode`` and time its reference generation (run in a child process)."""
    if mode.threads:
        torch.set_num_threads(mode.threads)
    device = torch.device(mode.device)
    backbone = infer_backbone(folder)
    log_mel = demo_log_mel(backbone.spec)
    rss_before = peak_rss_mib()
    start = time.perf_counter()
    generator = ReferenceGenerator.from_pretrained(
        folder, backbone, precision=mode.precision, compile=mode.compile, max_batch=mode.max_batch
    ).to(device)
    generator.progress = False
    load_s = time.perf_counter() - start
    parameters = sum(p.numel() for net in backbone.networks() for p in net.parameters())
    unet_parameters = sum(p.numel() for p in backbone.unet.parameters())
    gflop = unet_gflop(generator, log_mel)
    timer = UNetTimer(called_unet(generator), device)
    warmup_s, graphs = 0.0, compiled_graphs()
    if mode.warmup:  # same batch shapes as the timed run, so compiled graphs are reused
        start = time.perf_counter()
        generate_rounds(generator, log_mel, 2, 1)
        warmup_s = time.perf_counter() - start
        timer.reset()
    warmup_graphs, graphs = compiled_graphs() - graphs, compiled_graphs()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    generate_rounds(generator, log_mel, mode.ddim_steps, mode.rounds)
    if device.type == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / MIB if device.type == "cuda" else peak_rss_mib()
    return {
        "mode": asdict(mode), "model": Path(folder).name, "backbone": backbone.name, "gflop": gflop,
        "parameters": parameters, "unet_parameters": unet_parameters, "load_s": load_s,
        "warmup_s": warmup_s, "wall_s": wall,
        "unet_s": timer.seconds, "evaluations": timer.evaluations, "peak_mib": peak, "rss_before_mib": rss_before,
        "warmup_graphs": warmup_graphs, "timed_graphs": compiled_graphs() - graphs,
    }  # fmt: skip


def time_mode_in_child(folder: str, mode: Mode) -> dict[str, Any]:
    """:func:`time_mode` in a fresh Python process (this script with ``--worker``).

    The process's peak memory is then its own; the result comes back as the last line of its output, in JSON.
    """
    job = json.dumps({"folder": folder, "mode": asdict(mode)})
    done = subprocess.run([sys.executable, __file__, "--worker", job], stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def worker(job: str) -> None:
    """The child's side of :func:`time_mode_in_child`: time one setting, print the result as JSON."""
    quiet_logs()
    spec = json.loads(job)
    print(json.dumps(time_mode(spec["folder"], Mode(**spec["mode"]))))


# --- the table -----------------------------------------------------------------------------------


def ratio(value: float, reference: float) -> str:
    """``value / reference`` formatted as a ratio, e.g. ``0.75x``."""
    return f"{value:,.0f} ({value / reference:.2f}x of {reference:,})"


def count_lines(rows: list[CountRow]) -> list[str]:
    """Table rows of part a."""
    lines = []
    for i, row in enumerate(rows, 1):
        per_query = row.total / row.queries
        lines.append(
            f"| a{i} | UNet sample-evaluations, paper defaults: {row.what} | {row.total:,} | "
            f"{ratio(per_query, REFERENCE_EVALUATIONS)} | measured (pre-hook on the UNet, tiny model) |"
        )
    return lines


def timing_lines(index: int, result: dict[str, Any]) -> list[str]:
    """Table rows of part b for one setting."""
    mode = Mode(**result["mode"])
    evals, unet_s, wall, gflop = result["evaluations"], result["unet_s"], result["wall_s"], result["gflop"]
    per_eval = unet_s / evals
    rest_per_round = (wall - unet_s) / mode.rounds
    ours = PAPER_EVALUATIONS * per_eval + PAPER_ROUNDS * rest_per_round
    reference = REFERENCE_EVALUATIONS * per_eval + PAPER_ROUNDS * rest_per_round + result["load_s"]
    paper_run = mode.ddim_steps == PAPER_STEPS and mode.rounds == PAPER_ROUNDS
    source = "measured" if paper_run else "extrapolated from the measured time per evaluation and per round"
    before = f"peak RSS ({result['rss_before_mib']:,.0f} MiB before loading)"
    memory = "CUDA max allocated" if mode.device == "cuda" else before
    tag = f"b{index}"
    sizes = f"{result['parameters'] / 1e6:,.0f} M parameters, UNet {result['unet_parameters'] / 1e6:,.0f} M"
    model = f"{result['model']} ({result['backbone']}; {sizes})"
    warm = f"; warm-up {result['warmup_s']:.1f} s not counted" if mode.warmup else ""
    if mode.compile:
        warm += f"; graphs compiled: {result['warmup_graphs']} in warm-up, {result['timed_graphs']} while timed"
    return [
        f"| {tag}.1 | [{mode.name}, {mode.device}] load the full-size model {model} | {result['load_s']:.1f} s | "
        f"once per run (reference code: once per query) | measured |",
        f"| {tag}.2 | [{mode.name}] {mode.rounds} round(s) of reference generation, K=4, {mode.ddim_steps} DDIM "
        f"steps, 1 query, max_batch {mode.max_batch} | {wall:.1f} s, {evals:,} sample-evaluations | "
        f"- | measured{warm} |",
        f"| {tag}.3 | [{mode.name}] UNet time per sample-evaluation | {per_eval * 1000:,.1f} ms "
        f"({gflop / per_eval / 1000:.2f} TFLOP/s at {gflop:.1f} GFLOP each, counted) | - | measured |",
        f"| {tag}.4 | [{mode.name}] reference generation per query, paper defaults ({PAPER_EVALUATIONS:,} "
        f"evaluations + {PAPER_ROUNDS} x {rest_per_round:.1f} s VAE/text/sampler per round) | {ours:,.1f} s | "
        f"reference code: {reference:,.1f} s ({REFERENCE_EVALUATIONS:,} evaluations + load per query) | {source} |",
        f"| {tag}.5 | [{mode.name}] peak memory | {result['peak_mib']:,.0f} MiB | - | measured, {memory} |",
    ]


def overhead_lines(times: dict[Loop, list[float]], steps: int) -> list[str]:
    """Table rows of part c: median ms per Adam step and the ratio to the plain loop."""
    plain = statistics.median(times[("plain", None, False)])
    lines = []
    for i, ((_name, group, monitor), values) in enumerate(times.items(), 1):
        median = statistics.median(values)
        what = "plain PyTorch loop" if group is None else (
            f"Lightning fit loop, {group} Adam step(s) per batch, mask monitor {'on' if monitor else 'off'}"
        )
        lines.append(
            f"| c{i} | mask-optimisation step (full-size mask, K=4): {what} | {median * 1e3:.2f} ms | "
            f"{median / plain:.2f}x of the plain loop | measured, median of {len(values)} x {steps} steps |"
        )
    return lines


def print_table(counts: list[CountRow], timings: list[dict[str, Any]], overhead: dict[Loop, list[float]],
                overhead_steps: int) -> None:
    """Print the one table of results."""
    print("| # | measurement | value | per query (vs reference code) | source |")
    print("| --- | --- | --- | --- | --- |")
    for line in count_lines(counts):
        print(line)
    for i, result in enumerate(timings, 1):
        for line in timing_lines(i, result):
            print(line)
    for line in overhead_lines(overhead, overhead_steps) if overhead else []:
        print(line)


# --- command line --------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cuda = torch.cuda.is_available()
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if cuda else "cpu",
                        help="where the full-size model runs (default: cuda when available)")
    parser.add_argument("--precisions", default=None,
                        help="comma-separated precisions of the full-size runs (default: 32-true on cpu; "
                             "32-true,bf16-mixed,bf16-true on cuda)")
    parser.add_argument("--compile", choices=("off", "on", "both"), default=None,
                        help="torch.compile the UNet: off, on, or both for each precision (default: off on "
                             "cpu, both on cuda)")
    parser.add_argument("--cpu-ddim-steps", type=int, default=3,
                        help="DDIM steps of the timed run on a CPU (default 3)")
    parser.add_argument("--cuda-ddim-steps", type=int, default=PAPER_STEPS,
                        help=f"DDIM steps of the timed run on CUDA (default {PAPER_STEPS}, the paper's)")
    parser.add_argument("--rounds", type=int, default=1, help="rounds timed (3: the whole procedure; default 1)")
    parser.add_argument("--max-batch", type=int, default=16, help="most samples per network call (default 16)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for PyTorch (default: its own)")
    parser.add_argument("--backbones", default=DEFAULT_BACKBONES,
                        help=f"full-size models to time, as backbone:size of `python -m dgmo_pl.tiny`, written "
                             f"to a temporary folder (default {DEFAULT_BACKBONES}; several GB each)")
    parser.add_argument("--full-model", type=Path, default=None,
                        help="time this existing folder instead of --backbones (backbone inferred from it)")
    parser.add_argument("--count-queries", default="1,2,4", help="query counts of the counting runs (default 1,2,4)")
    parser.add_argument("--count-steps-per-round", type=int, default=300,
                        help="mask steps per round in the counting runs (default 300, the paper's; with few, "
                             "the thresholded masks stay all ones, later rounds' estimates equal the mixture "
                             "and are shared between queries and learning rates)")
    parser.add_argument("--skip-counts", action="store_true", help="leave out part a")
    parser.add_argument("--skip-timing", action="store_true", help="leave out part b")
    parser.add_argument("--skip-overhead", action="store_true", help="leave out part c")
    parser.add_argument("--overhead-steps", type=int, default=300, help="Adam steps per timed loop in part c")
    parser.add_argument("--overhead-repeats", type=int, default=5, help="alternating repeats in part c")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # one timed setting, in a child
    args = parser.parse_args(argv)
    if args.worker:
        return args
    if args.device == "cuda" and not cuda:
        parser.error("--device cuda, but CUDA is not available")
    default_precisions = "32-true,bf16-mixed,bf16-true" if args.device == "cuda" else "32-true"
    args.precisions = (args.precisions or default_precisions).split(",")
    args.compile = args.compile or ("both" if args.device == "cuda" else "off")
    args.count_queries = [int(n) for n in args.count_queries.split(",")]
    items = args.backbones.split(",")
    args.backbones = [tuple(item.split(":", 1)) if ":" in item else (item, "full") for item in items]
    check_args(parser, args)
    return args


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Stop with a usage error on a setting the runs would refuse later, in a child process."""
    try:
        for precision in args.precisions:
            ReferenceGenerator.check_runtime(precision, "sdpa", args.max_batch)
        GenerationConfig(4, ddim_steps=min(args.cpu_ddim_steps, args.cuda_ddim_steps))
    except ValueError as err:
        parser.error(str(err))
    for name, size in args.backbones:
        try:
            sizes = builder(name).SIZES
        except ValueError as err:
            parser.error(f"--backbones: {err}")
        if size not in sizes:
            parser.error(f"--backbones: {name} has no size {size!r}; choose one of {', '.join(sizes)}")
    if args.rounds < 1 or min(args.count_queries) < 1 or max(args.count_queries) > len(QUERIES):
        parser.error(f"--rounds must be at least 1 and --count-queries between 1 and {len(QUERIES)}")


def modes(args: argparse.Namespace) -> list[Mode]:
    """The full-size settings to time, in order."""
    compiles = {"off": [False], "on": [True], "both": [False, True]}[args.compile]
    steps = args.cuda_ddim_steps if args.device == "cuda" else args.cpu_ddim_steps
    return [
        Mode(p, c, args.device, steps, args.rounds, args.max_batch, args.threads, args.device == "cuda" or c)
        for p in args.precisions
        for c in compiles
    ]


def quiet_logs() -> None:
    """Keep Lightning's info lines, progress bars of loading and saving, and warnings out of the printout."""
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    logging.getLogger("lightning.fabric").setLevel(logging.WARNING)
    transformers_logging.disable_progress_bar()
    diffusers_logging.disable_progress_bar()
    warnings.filterwarnings("ignore")


def main(argv: list[str] | None = None) -> None:
    """Run the measurements and print the table."""
    args = parse_args(argv)
    if args.worker:
        return worker(args.worker)
    if args.threads:
        torch.set_num_threads(args.threads)
    quiet_logs()
    started = time.perf_counter()
    counts: list[CountRow] = []
    timings: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="dgmo-bench-") as tmp:
        work = Path(tmp)
        if not args.skip_counts:
            tiny = save_tiny_audioldm(work / "tiny")
            counts = measure_counts(tiny, work / "counts", args.count_queries, args.count_steps_per_round)
            print(f"counted in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        if not args.skip_timing:
            models = [(args.full_model, None)] if args.full_model else args.backbones
            for name, size in models:
                folder = name if size is None else save_model(work / f"{name}-{size}", name, size)
                for mode in modes(args):
                    timings.append(time_mode_in_child(str(folder), mode))
                    print(f"timed {Path(folder).name}, {mode.name} at {time.perf_counter() - started:.0f} s",
                          file=sys.stderr)
                if size is not None:
                    shutil.rmtree(folder)  # several GB each
    overhead: dict[Loop, list[float]] = {}
    if not args.skip_overhead:
        overhead = measure_overhead(args.overhead_steps, args.overhead_repeats, DEFAULT_STEPS_PER_BATCH)
        print(f"mask steps timed at {time.perf_counter() - started:.0f} s", file=sys.stderr)
    threads = args.threads or torch.get_num_threads()
    print(f"\nReference generation, device {args.device}, {threads} CPU thread(s), torch {torch.__version__}\n")
    print_table(counts, timings, overhead, args.overhead_steps)
    print(f"\n(total run time {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
