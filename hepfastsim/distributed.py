"""Many files, one core or many: ``convert`` over a list of inputs with a choice of executor.

The unit of work is one input file -> one output file (:func:`hepfastsim.convert.convert`,
which writes a hidden temporary and renames it into place). That keeps "one output per
input" atomic without merging parts, and a campaign of thousands of files has far more
tasks than workers, so splitting files into entry ranges would not add parallelism.

Executors (``executor=``):

``"iterative"``
    one after the other in this process.
``"futures"``
    a :class:`concurrent.futures.ProcessPoolExecutor` of ``workers`` processes on this
    machine; if a worker process dies the pool is rebuilt and the unfinished files are
    resubmitted (up to ``retries`` times).
``"dask"``
    dask.distributed: ``scheduler`` is the address of a running scheduler
    (``tcp://host:8786``; ``dask scheduler`` + ``dask worker``, or a dask-jobqueue cluster),
    or a ``Client``/cluster object; with no scheduler a :class:`~distributed.LocalCluster`
    of ``workers`` single-threaded processes is started and closed. A task whose worker
    dies is rerun elsewhere by the scheduler (up to its ``allowed-failures``, 3 by
    default); ``retries`` reruns tasks that raised an unexpected exception.

Results do not depend on the executor, the number of workers or the order of the tasks:
random numbers are keyed on (seed, file UUID, entry, draw) (see
:mod:`hepfastsim.kernels.rng`). With ``ConvertConfig(reproducible=True)`` the output
files are byte-for-byte identical too (same chunk size: chunks become baskets).

Destinations are checked once, up front, by the caller's process: an existing output is an
error unless ``overwrite`` (replace it) or ``resume`` (keep it and skip its input: outputs
appear only complete, so an existing one is a finished one). The tasks themselves then
replace their destination, so that a task rerun after its worker died just after
publishing rewrites the same file. Temporaries left by killed workers
(``.NAME.*.partial``) are removed once every task of a run has finished.

coffea's executors (``coffea.processor.IterativeExecutor``/``FuturesExecutor``/
``DaskExecutor``) are built to map a processor over chunks and merge accumulators; here
every task has its own output and summary and a failure must name its file, so the
executors are used directly (``concurrent.futures``, ``distributed.Client.map``).
For processors whose outputs merge (the dijet histograms), :func:`run_processor` runs a
fileset through ``coffea.processor.Runner`` with the coffea executor matching the same
``executor``/``scheduler``/``workers`` options (:func:`coffea_executor`).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import glob
import json
import multiprocessing
import os
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args

from hepfastsim.convert import ConvertConfig, ConvertSummary, convert
from hepfastsim.errors import HepfastsimError, OutputError
from hepfastsim.io.writer import check_destination
from hepfastsim.simulators.base import Simulator

__all__ = [
    "Executor",
    "EXECUTORS",
    "ConvertManyError",
    "TaskFailure",
    "expand_inputs",
    "plan_outputs",
    "map_tasks",
    "convert_many",
    "coffea_executor",
    "run_processor",
]

Executor = Literal["iterative", "futures", "dask"]
EXECUTORS: tuple[str, ...] = get_args(Executor)

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class TaskFailure:
    """A task that ended with an error: which input, the error class name and its message."""

    input: str
    error: str
    message: str

    def __str__(self) -> str:
        return f"{self.input}: {self.message}"


class ConvertManyError(HepfastsimError):
    """Some inputs of :func:`convert_many` failed; the others were converted.

    ``summaries`` holds the finished conversions, ``failures`` one :class:`TaskFailure` per
    failed input.
    """

    def __init__(self, failures: Sequence[TaskFailure], summaries: Sequence[ConvertSummary]) -> None:
        self.failures = list(failures)
        self.summaries = list(summaries)
        shown = "; ".join(str(f) for f in self.failures[:3])
        more = f"; and {len(self.failures) - 3} more" if len(self.failures) > 3 else ""
        done = len(self.summaries)
        super().__init__(
            f"{len(self.failures)} of {len(self.failures) + done} inputs failed ({done} converted): {shown}{more}"
        )


# -- inputs and outputs ---------------------------------------------------------------------
def _fileset_files(path: Path) -> list[str]:
    """Files of a coffea fileset JSON: ``{dataset: {"files": {path: tree} | [path, ...]}}``
    (or ``{dataset: [path, ...]}``); relative paths are relative to the JSON file."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise HepfastsimError(f"cannot read fileset {str(path)!r}: {err}") from err
    if not isinstance(data, dict):
        raise HepfastsimError(f"fileset {str(path)!r}: expected a JSON object of datasets, got {type(data).__name__}")
    files: list[str] = []
    for dataset, spec in data.items():
        entries = spec.get("files") if isinstance(spec, dict) else spec
        if not isinstance(entries, (dict, list)):
            raise HepfastsimError(
                f"fileset {str(path)!r}: dataset {dataset!r} should have 'files' as a list or an "
                f"object of path -> tree, got {type(entries).__name__}"
            )
        for name in entries:
            p = Path(name).expanduser()
            files.append(str(p if p.is_absolute() or "://" in name else path.parent / p))
    return files


def expand_inputs(patterns: Sequence[str | os.PathLike[str]]) -> list[str]:
    """Input files from paths, glob patterns (``"data/*.root"``) and coffea fileset JSONs.

    Keeps the given order (globs sorted), drops repeats; a pattern matching nothing is an error.
    """
    out: list[str] = []
    for pattern in map(str, patterns):
        if pattern.endswith(".json") and Path(pattern).is_file():
            found = _fileset_files(Path(pattern))
        elif glob.has_magic(pattern):
            found = sorted(glob.glob(os.path.expanduser(pattern)))
            if not found:
                raise HepfastsimError(f"no input file matches {pattern!r}")
        else:
            found = [pattern]
        out.extend(f for f in found if f not in out)
    if not out:
        raise HepfastsimError("no input files given")
    return out


def plan_outputs(inputs: Sequence[str], output_dir: str | os.PathLike[str]) -> dict[str, str]:
    """Map each input to ``output_dir/<input file name>``; two inputs with one name are an error."""
    directory = Path(output_dir)
    plan: dict[str, str] = {}
    first_of: dict[str, str] = {}
    for inp in inputs:
        name = Path(inp).name
        if name in first_of:
            raise HepfastsimError(
                f"inputs {first_of[name]!r} and {inp!r} would both be written to "
                f"{str(directory / name)!r}; convert them into different output directories"
            )
        first_of[name] = inp
        plan[inp] = str(directory / name)
    return plan


def _stale_temporaries(destination: Path) -> list[Path]:
    return list(destination.parent.glob(f".{glob.escape(destination.name)}.*.partial"))


def _remove_stale_temporaries(destinations: Sequence[str]) -> None:
    for dest in destinations:
        for tmp in _stale_temporaries(Path(dest)):
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)


# -- running tasks --------------------------------------------------------------------------
def _connect(scheduler: Any, workers: int | None) -> tuple[Any, ExitStack]:
    """A dask Client for ``scheduler`` (address, Client, cluster) or a new LocalCluster."""
    try:
        import distributed
    except ImportError as err:  # pragma: no cover - distributed is a dependency
        raise HepfastsimError("--executor dask needs dask.distributed: pip install 'dask[distributed]'") from err
    stack = ExitStack()
    if scheduler is None:
        n = workers or os.cpu_count() or 1
        cluster = stack.enter_context(
            distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None)
        )
        client = stack.enter_context(distributed.Client(cluster))
        return client, stack
    if isinstance(scheduler, distributed.Client):
        return scheduler, stack
    where = scheduler if isinstance(scheduler, str) else type(scheduler).__name__
    try:
        client = stack.enter_context(distributed.Client(scheduler, timeout="30s"))
    except (OSError, TimeoutError) as err:
        stack.close()
        raise HepfastsimError(f"cannot connect to the dask scheduler {where!r}: {err}") from err
    try:
        client.wait_for_workers(workers or 1, timeout=120)
    except TimeoutError as err:
        stack.close()
        raise HepfastsimError(
            f"dask scheduler {where!r}: expected at least {workers or 1} workers within 120 s, "
            f"got {len(client.scheduler_info()['workers'])}"
        ) from err
    return client, stack


def _map_dask(fn: Callable[[T], R], items: Sequence[T], scheduler: Any, workers: int | None, retries: int) -> Iterator[tuple[int, R | BaseException]]:
    import distributed

    client, stack = _connect(scheduler, workers)
    with stack:
        futures = client.map(fn, list(items), pure=False, retries=retries)
        index = {f.key: i for i, f in enumerate(futures)}
        try:
            for future in distributed.as_completed(futures):
                try:
                    result: R | BaseException = future.result()
                except Exception as err:  # KilledWorker, or an error after all retries
                    result = err
                yield index[future.key], result
        finally:
            client.cancel([f for f in futures if not f.done()])


def _map_futures(fn: Callable[[T], R], items: Sequence[T], workers: int | None, retries: int) -> Iterator[tuple[int, R | BaseException]]:
    n = workers or os.cpu_count() or 1
    context = multiprocessing.get_context("forkserver")
    attempts = dict.fromkeys(range(len(items)), 0)
    pending = set(range(len(items)))
    while pending:
        broken = False
        pool = concurrent.futures.ProcessPoolExecutor(max_workers=n, mp_context=context)
        try:
            futures = {pool.submit(fn, items[i]): i for i in sorted(pending)}
            for future in concurrent.futures.as_completed(futures):
                i = futures[future]
                try:
                    result: R | BaseException = future.result()
                except concurrent.futures.process.BrokenProcessPool as err:
                    broken = True  # a worker died: every unfinished task fails with this
                    attempts[i] += 1
                    if attempts[i] <= retries:
                        continue  # resubmitted to a new pool
                    result = err
                except Exception as err:
                    result = err
                pending.discard(i)
                yield i, result
        finally:
            # an interrupted consumer: drop the queued tasks rather than run them all first
            pool.shutdown(wait=True, cancel_futures=True)
        if not broken:
            break


def map_tasks(
    fn: Callable[[T], R],
    items: Sequence[T],
    *,
    executor: Executor = "iterative",
    scheduler: Any = None,
    workers: int | None = None,
    retries: int = 2,
    ordered: bool = False,
) -> Iterator[tuple[int, R | BaseException]]:
    """Run ``fn`` on every item with ``executor``; yield ``(index, result)`` as tasks finish,
    or in item order with ``ordered`` (finished results wait, in memory, for earlier ones).

    ``fn`` and the items must be picklable (top-level functions, ``functools.partial``) for
    ``"futures"`` and ``"dask"``. A task that raised, or whose worker died more often than
    allowed, yields the exception instead of a result; ``"iterative"`` lets exceptions
    propagate. The reusable core of :func:`convert_many`; ``hepfastsim generate`` can map
    its event blocks through it (``ordered=True``) and write them in block order.
    """
    if executor not in EXECUTORS:
        raise HepfastsimError(f"--executor: expected one of {', '.join(EXECUTORS)}, got {executor!r}")
    if workers is not None and workers < 1:
        raise HepfastsimError(f"--workers must be at least 1, got {workers}")
    if retries < 0:
        raise HepfastsimError(f"retries must be >= 0, got {retries}")
    if scheduler is not None and executor != "dask":
        raise HepfastsimError(f"--scheduler needs --executor dask, got --executor {executor}")
    if executor == "iterative":
        return ((i, fn(item)) for i, item in enumerate(items))
    if not items:
        return iter(())
    if executor == "futures":
        results = _map_futures(fn, items, workers, retries)
    else:
        results = _map_dask(fn, items, scheduler, workers, retries)
    return _in_order(results) if ordered else results


def _in_order(results: Iterator[tuple[int, R]]) -> Iterator[tuple[int, R]]:
    waiting: dict[int, R] = {}
    next_index = 0
    for i, result in results:
        waiting[i] = result
        while next_index in waiting:
            yield next_index, waiting.pop(next_index)
            next_index += 1


# -- convert_many ---------------------------------------------------------------------------
def _convert_task(job: tuple[str, str], config: ConvertConfig, simulator: Simulator | None) -> ConvertSummary | TaskFailure:
    """One file: runs on a worker. Errors about the input come back as a :class:`TaskFailure`
    (retrying cannot fix them); anything else raises, so that dask retries it."""
    source, destination = job
    try:
        return convert(source, destination, config, simulator=simulator)
    except HepfastsimError as err:
        return TaskFailure(source, type(err).__name__, str(err))


@dataclass(frozen=True)
class _Task:
    """Picklable ``job -> _convert_task(job, config, simulator)``."""

    config: ConvertConfig
    simulator: Simulator | None

    def __call__(self, job: tuple[str, str]) -> ConvertSummary | TaskFailure:
        return _convert_task(job, self.config, self.simulator)


def convert_many(
    inputs: Sequence[str | os.PathLike[str]] | Mapping[str | os.PathLike[str], str | os.PathLike[str]],
    output_dir: str | os.PathLike[str] | None = None,
    config: ConvertConfig = ConvertConfig(),
    *,
    executor: Executor = "iterative",
    scheduler: Any = None,
    workers: int | None = None,
    resume: bool = False,
    retries: int = 2,
    simulator: Simulator | None = None,
    on_done: Callable[[ConvertSummary | TaskFailure], None] | None = None,
) -> list[ConvertSummary]:
    """Convert many files, one output per input, with ``executor`` (see module docstring).

    ``inputs``: paths (then outputs are ``output_dir/<input name>``) or a mapping input ->
    output. ``config.overwrite`` replaces existing outputs; ``resume`` skips inputs whose
    output exists. ``simulator`` (optional, picklable) replaces ``config.model``.
    ``on_done`` is called in this process with each finished summary or failure.

    Returns the summaries in input order (skipped inputs left out). Raises
    :class:`ConvertManyError` (after every task has finished) if some inputs failed.
    """
    if isinstance(inputs, Mapping):
        if output_dir is not None:
            raise HepfastsimError("give either a mapping input -> output or an output directory, not both")
        plan = {str(k): str(v) for k, v in inputs.items()}
    else:
        if output_dir is None:
            raise HepfastsimError("several inputs need an output directory (--output-dir)")
        if not Path(output_dir).is_dir():
            raise OutputError(str(output_dir), "the output directory does not exist")
        plan = plan_outputs([str(p) for p in inputs], output_dir)
    if config.overwrite and resume:
        raise HepfastsimError("--overwrite and --resume contradict each other: choose one")
    seen: dict[str, str] = {}
    for inp, out in plan.items():
        key = os.path.abspath(out)
        if key in seen:
            raise HepfastsimError(f"inputs {seen[key]!r} and {inp!r} are both mapped to output {out!r}")
        seen[key] = inp
    jobs = []
    for inp, out in plan.items():
        if resume and Path(out).is_file():
            continue
        check_destination(out, overwrite=config.overwrite)
        jobs.append((inp, out))
    # destinations checked above; tasks replace theirs so that a rerun task can republish
    task = _Task(dataclasses.replace(config, overwrite=True), simulator)
    results: dict[int, ConvertSummary] = {}
    failures: list[TaskFailure] = []
    finished = False
    try:
        for i, result in map_tasks(task, jobs, executor=executor, scheduler=scheduler, workers=workers, retries=retries):
            if isinstance(result, BaseException):
                result = TaskFailure(jobs[i][0], type(result).__name__, _describe_crash(jobs[i][0], result))
            if isinstance(result, TaskFailure):
                failures.append(result)
            else:
                results[i] = result
            if on_done is not None:
                on_done(result)
        finished = True
    finally:
        if finished:
            _remove_stale_temporaries([out for _, out in jobs])
    summaries = [results[i] for i in sorted(results)]
    if failures:
        order = {inp: k for k, (inp, _) in enumerate(jobs)}
        raise ConvertManyError(sorted(failures, key=lambda f: order.get(f.input, 0)), summaries)
    return summaries


def _describe_crash(source: str, err: BaseException) -> str:
    name = type(err).__name__
    if name == "KilledWorker":
        return f"the worker converting {source!r} died too many times (crash or out of memory?)"
    if isinstance(err, concurrent.futures.process.BrokenProcessPool):
        return f"the worker process converting {source!r} died too many times (crash or out of memory?)"
    text = str(err).strip().splitlines()
    return f"converting {source!r} failed: {name}: {text[0] if text else ''}"


# -- coffea processors ----------------------------------------------------------------------
def coffea_executor(executor: Executor = "iterative", *, scheduler: Any = None, workers: int | None = None, client: Any = None, **options: Any) -> Any:
    """The coffea executor matching our ``executor`` option, for ``coffea.processor.Runner``.

    ``"dask"`` uses ``client``, else connects to ``scheduler``, else (both None) lets coffea
    start its own local client; ``options`` go to the coffea executor (``status``,
    ``retries``, ...). Example: ``Runner(coffea_executor("dask", scheduler=addr), schema=...)``.
    """
    from coffea import processor

    if executor == "iterative":
        return processor.IterativeExecutor(**options)
    if executor == "futures":
        return processor.FuturesExecutor(workers=workers or os.cpu_count() or 1, **options)
    if executor == "dask":
        if client is None:
            import distributed

            client = distributed.Client(scheduler) if scheduler is not None else None
        return processor.DaskExecutor(client=client, **options)
    raise HepfastsimError(f"--executor: expected one of {', '.join(EXECUTORS)}, got {executor!r}")


def run_processor(
    fileset: Mapping[str, Any],
    processor_instance: Any,
    *,
    executor: Executor = "iterative",
    scheduler: Any = None,
    workers: int | None = None,
    chunksize: int = 100_000,
    schema: Any = None,
    treename: str = "Events",
    retries: int = 2,
) -> Any:
    """Run a coffea processor over ``fileset`` (``{dataset: [files]}`` or coffea's dict form)
    and return its merged output (histograms add up across chunks and files).

    ``schema`` defaults to :class:`hepfastsim.io.coffea_schema.FastSimNanoAODSchema`. A dask
    run connects to ``scheduler`` or starts a LocalCluster of ``workers``, as :func:`convert_many`.
    """
    from coffea import processor

    if executor not in EXECUTORS:
        raise HepfastsimError(f"--executor: expected one of {', '.join(EXECUTORS)}, got {executor!r}")
    if scheduler is not None and executor != "dask":
        raise HepfastsimError(f"--scheduler needs --executor dask, got --executor {executor}")
    if schema is None:
        from hepfastsim.io.coffea_schema import FastSimNanoAODSchema

        schema = FastSimNanoAODSchema
    with ExitStack() as stack:
        client = None
        if executor == "dask":
            client, owned = _connect(scheduler, workers)
            stack.enter_context(owned)
        options: dict[str, Any] = {"status": False}
        if executor != "iterative":
            options["retries"] = retries
        runner = processor.Runner(
            coffea_executor(executor, workers=workers, client=client, **options), schema=schema, chunksize=chunksize
        )
        return runner(dict(fileset), processor_instance, treename=treename)
