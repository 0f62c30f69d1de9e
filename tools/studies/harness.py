"""Reruns the paper's comparison tables: a grid of ``tools/train.py`` runs, then a markdown table.

A *table* is a directory (``configs/paper/<table>/``) holding one flagfile per row of
the paper's table (``<row>.flags``: method, sources, hyper-parameters; never
``--dataset``, ``--target``, ``--seed`` or ``--model_dir``) and a ``table.json``::

    {
      "title": "CIFAR: SSKT vs. baselines (reconstructed layout)",
      "metric": "best_val_accuracy",      # key of each run's results.json
      "scale": 100,                        # shown value = metric * scale (optional, default 1)
      "digits": 2,                         # decimals shown (optional, default 2)
      "seeds": [0, 1, 2],                  # default seeds of every cell
      "rows": [{"name": "kd", "label": "KD", "requires": ["teachers"]}, ...],
      "columns": [{"dataset": "cifar10", "target": "resnet20", "label": "CIFAR-10 ResNet-20",
                   "flags": ["--image_size=224"], "slug": "cifar10-resnet20"}, ...],
      "paper": {"<row name>": {"<column slug>": "92.46±0.15"}},   # optional
      "notes": ["..."],                                            # optional
      "extra_metrics": [{"metric": "val_accuracy", "label": "last epoch", "scale": 100}],  # optional
      "comparisons": [{"row": "sskt", "against": ["scratch", "sskt_alpha0"]}],  # optional
      "metric_label": "best epoch"                                 # optional
    }

Each ``extra_metrics`` entry adds a column per table column with that results.json
value (mean ± std over seeds; ``digits`` defaults to the table's); its header is the
entry's label (``<column label>: <label>`` when the table has several columns).
``metric_label`` is added to each column's header, in parentheses.

A row's ``name`` is its flagfile's stem. A column's ``flags`` and ``slug`` are
optional; the slug defaults to ``<dataset slug>-<target>`` (``voc/2007`` ->
``voc_2007``). A row's ``requires`` names sibling tables (directories beside this
one) whose cells must exist before the row's runs: they run first, restricted to the
columns on the datasets being run. The KD rows require ``teachers``, whose cells
train the teacher networks the KD flagfiles point to. A row's ``cache_views`` (K) makes
the harness build the soft-label cache its flagfile's ``--soft_label_cache`` names, once
per column, before the row's runs: ``tools/cache_soft_labels.py`` with the row's flags,
``--seed=0`` (:data:`CACHE_SEED`) and ``--views=K`` (``<cache dir>/cache.log``), plus the
row's ``cache_flags`` (a list of the cache tool's own flags, e.g.
``["--soft_label_control=shuffle"]`` for a control cache). A row's ``cache_merge`` (names of
rows of the same table that build caches of single sources) makes it build its cache by
joining theirs instead (``tools/cache_soft_labels.py --merge``), after building them.

Each cell (row, column, seed) runs::

    python tools/train.py --flagfile=<row>.flags [its placeholder lines, expanded]
        <column flags> --dataset=D --target=T --seed=S
        --model_dir=<output_dir>/<table>/<row>/<column slug>/seed<S> <extra flags>

Flag values in flagfiles, column flags and extra flags may hold the placeholders
``{dataset}``, ``{dataset_slug}``, ``{target}``, ``{seed}`` and ``{output_dir}``.
absl cannot expand them inside a flagfile, so each flagfile line holding one is
repeated, expanded, right after ``--flagfile`` (a later flag overrides an earlier
one); only string flags may hold placeholders, since absl still parses the
flagfile's unexpanded line first.
"""

import dataclasses
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import time

from sskt_tf.errors import ConfigError
from studies import learning_curves

# The harness lives in tools/studies/, beside the tools it runs; the tables in configs/ at the top.
TOOLS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO = os.path.dirname(TOOLS)
TRAIN_SCRIPT = os.path.join(TOOLS, "train.py")
CACHE_SCRIPT = os.path.join(TOOLS, "cache_soft_labels.py")
PAPER_TABLES = os.path.join(REPO, "configs", "paper")

# The harness sets these per cell; a row or column setting them would be overridden.
_CELL_FLAGS = ("dataset", "target", "seed", "model_dir")
_PLACEHOLDERS = ("dataset", "dataset_slug", "target", "seed", "output_dir")
_TABLE_KEYS = {
    "title",
    "metric",
    "scale",
    "digits",
    "seeds",
    "rows",
    "columns",
    "paper",
    "notes",
    "extra_metrics",
    "metric_label",
    "comparisons",
}
_EXTRA_METRIC_KEYS = {"metric", "label", "scale", "digits"}
_COMPARISON_KEYS = {"row", "against"}
# Two-sided 95% quantiles of Student's t with 1, 2, ..., 30 degrees of freedom.
_T_95 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip
_ROW_KEYS = {"name", "label", "requires", "cache_views", "cache_flags", "cache_merge"}
# The seed that draws the views of a soft-label cache the harness builds (each run's --seed still
# orders its own batches), so every seed of a row trains from the same cache.
CACHE_SEED = 0
_COLUMN_KEYS = {"dataset", "target", "label", "flags", "slug"}
MISSING = "–"


@dataclasses.dataclass(frozen=True)
class Row:
    """One row of a table: a method and its flagfile."""

    name: str
    label: str
    flagfile: str
    requires: tuple = ()
    cache_views: int = 0
    cache_flags: tuple = ()
    cache_merge: tuple = ()

    @property
    def builds_cache(self):
        """Whether the harness builds this row's soft-label cache before its runs."""
        return bool(self.cache_views or self.cache_merge)


@dataclasses.dataclass(frozen=True)
class Column:
    """One column of a table: a target network trained on a dataset."""

    dataset: str
    target: str
    label: str
    slug: str
    flags: tuple = ()


@dataclasses.dataclass(frozen=True)
class Table:
    """A table of the paper, as read from ``<path>/table.json`` by :func:`load_table`."""

    name: str
    path: str
    title: str
    metric: str
    scale: float
    digits: int
    seeds: tuple
    rows: tuple
    columns: tuple
    paper: dict = dataclasses.field(default_factory=dict)
    notes: tuple = ()
    extra_metrics: tuple = ()
    metric_label: str = ""
    comparisons: tuple = ()  # (row, other row) pairs whose paired differences the results show


@dataclasses.dataclass(frozen=True)
class ExtraMetric:
    """A further results.json value shown beside a table's metric in every column (e.g. the last epoch's accuracy)."""

    metric: str
    label: str
    scale: float = 1.0
    digits: int = 2


@dataclasses.dataclass(frozen=True)
class Cell:
    """One step of the grid: a training run, or (``kind="cache"``) building a row's soft-label cache."""

    table: Table
    row: Row
    column: Column
    seed: int
    model_dir: str
    command: tuple
    kind: str = "train"

    @property
    def description(self):
        """``<table>/<row> <column slug> seed<S>`` (or ``... soft-label cache``), for progress lines."""
        what = "soft-label cache" if self.kind == "cache" else f"seed{self.seed}"
        return f"{self.table.name}/{self.row.name} {self.column.slug} {what}"

    @property
    def results_path(self):
        """The file present once the step finished: the run's ``results.json``, the cache's ``manifest.json``."""
        return os.path.join(self.model_dir, "manifest.json" if self.kind == "cache" else "results.json")


def dataset_slug(dataset):
    """A dataset name as a path component: ``voc/2007`` -> ``voc_2007``.

    Args:
        dataset: a ``--dataset`` value.

    Returns:
        The name with every run of characters other than letters, digits, ``.``,
        ``_`` and ``-`` replaced by ``_``.
    """
    return re.sub(r"[^A-Za-z0-9._-]+", "_", dataset).strip("_")


def resolve_table_path(table):
    """The directory of a table given as a path or as a name under ``configs/paper/``.

    Args:
        table: ``configs/paper/cifar``, or just ``cifar``.

    Returns:
        The directory holding ``table.json``.

    Raises:
        ConfigError: neither exists.
    """
    for path in (table, os.path.join(PAPER_TABLES, table)):
        if os.path.isfile(os.path.join(path, "table.json")):
            return path
    raise ConfigError(f"No table.json in {table!r} (nor in {os.path.join(PAPER_TABLES, table)}).")


def read_flagfile(path, _including=()):
    """The flag lines of a flagfile, as absl reads them: comments and blank lines dropped.

    A ``--flagfile=PATH`` line is replaced by the lines of ``PATH`` (relative to the
    working directory, as absl resolves it), so the harness sees what training sees.

    Args:
        path: the flagfile.

    Returns:
        A list of ``--name=value`` strings.

    Raises:
        ConfigError: a nested flagfile that does not exist, or that includes itself.
    """
    if path in _including:
        raise ConfigError(f"{path} includes itself through {' -> '.join(_including)}.")
    if not os.path.exists(path):
        where = f" (included by {_including[-1]}; paths are relative to the working directory)" if _including else ""
        raise ConfigError(f"Flagfile {path} does not exist{where}.")
    with open(path) as f:
        lines = [line.strip() for line in f]
    flag_lines = []
    for line in lines:
        if not line or line.startswith(("#", "//")):
            continue
        if _flag_name(line) == "flagfile":
            flag_lines.extend(read_flagfile(line.split("=", 1)[1], (*_including, path)))
        else:
            flag_lines.append(line)
    return flag_lines


def _flag_name(flag):
    """``--name=value`` / ``--name`` / ``--noname`` -> ``name`` (``--nofoo`` stays ``nofoo``)."""
    return flag.lstrip("-").split("=", 1)[0]


def _check_no_cell_flags(flag_list, where):
    """Raises ConfigError if ``flag_list`` sets a flag the harness sets per cell."""
    clashes = sorted({_flag_name(f) for f in flag_list} & set(_CELL_FLAGS))
    if clashes:
        raise ConfigError(f"{where} sets {', '.join('--' + c for c in clashes)}: the harness sets those per cell.")


def _check_keys(entry, allowed, required, where):
    """Raises ConfigError for a table.json object with unknown or missing keys."""
    if not isinstance(entry, dict):
        raise ConfigError(f"{where} must be a JSON object, got {entry!r}.")
    unknown, missing = set(entry) - allowed, set(required) - set(entry)
    if unknown or missing:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}, missing keys {sorted(missing)}.")


def _parse_row(entry, table_path):
    """A :class:`Row` from its table.json entry; its flagfile must exist and leave the cell flags alone."""
    where = f"{table_path}/table.json row {entry.get('name') if isinstance(entry, dict) else entry!r}"
    _check_keys(entry, _ROW_KEYS, ("name", "label"), where)
    flagfile = os.path.join(table_path, f"{entry['name']}.flags")
    if not os.path.isfile(flagfile):
        raise ConfigError(f"{where}: its flagfile {flagfile} does not exist.")
    _check_no_cell_flags(read_flagfile(flagfile), flagfile)
    requires = tuple(entry.get("requires", ()))
    for name in requires:
        resolve_table_path(os.path.join(os.path.dirname(os.path.normpath(table_path)), name))
    cache_views = entry.get("cache_views", 0)
    if not isinstance(cache_views, int) or cache_views < 0:
        raise ConfigError(f"{where}: cache_views must be a positive number of views, got {cache_views!r}.")
    if cache_views and not _flag_value(read_flagfile(flagfile), "soft_label_cache"):
        raise ConfigError(
            f"{where}: cache_views needs --soft_label_cache=DIR in {flagfile} (where to build the cache)."
        )
    cache_flags = entry.get("cache_flags", [])
    if not isinstance(cache_flags, list) or not all(isinstance(f, str) and f.startswith("--") for f in cache_flags):
        raise ConfigError(f"{where}: cache_flags must be a list of flags such as '--top_k=10', got {cache_flags!r}.")
    if cache_flags and not cache_views:
        raise ConfigError(f"{where}: cache_flags are for the row's cache, which only cache_views builds.")
    cache_merge = entry.get("cache_merge", [])
    if not isinstance(cache_merge, list) or len(cache_merge) == 1 or not all(isinstance(n, str) for n in cache_merge):
        raise ConfigError(f"{where}: cache_merge must list two or more rows whose caches to join, got {cache_merge!r}.")
    if cache_merge and cache_views:
        raise ConfigError(f"{where}: give cache_views (build the cache) or cache_merge (join other rows'), not both.")
    if cache_merge and not _flag_value(read_flagfile(flagfile), "soft_label_cache"):
        raise ConfigError(f"{where}: cache_merge needs --soft_label_cache=DIR in {flagfile} (where to write it).")
    return Row(entry["name"], entry["label"], flagfile, requires, cache_views, tuple(cache_flags), tuple(cache_merge))


def _check_cache_merges(rows, table_path):
    """Raises ConfigError if a row's ``cache_merge`` names a row that builds no cache of its own."""
    by_name = {row.name: row for row in rows}
    for row in rows:
        for name in row.cache_merge:
            if name not in by_name or not by_name[name].cache_views:
                raise ConfigError(
                    f"{table_path}/table.json row {row.name}: cache_merge names {name!r}, which is not a row "
                    "with cache_views (a row that builds a cache)."
                )


def _flag_value(flag_list, name):
    """The value the last ``--name=value`` of ``flag_list`` sets (None if none does)."""
    values = [flag.split("=", 1)[1] for flag in flag_list if "=" in flag and _flag_name(flag) == name]
    return values[-1] if values else None


def _parse_column(entry, table_path):
    """A :class:`Column` from its table.json entry."""
    where = f"{table_path}/table.json column {entry.get('label') if isinstance(entry, dict) else entry!r}"
    _check_keys(entry, _COLUMN_KEYS, ("dataset", "target", "label"), where)
    flag_list = tuple(entry.get("flags", ()))
    _check_no_cell_flags(flag_list, where)
    slug = entry.get("slug") or f"{dataset_slug(entry['dataset'])}-{entry['target']}"
    return Column(entry["dataset"], entry["target"], entry["label"], slug, flag_list)


def _unique(names, what, table_path):
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ConfigError(f"{table_path}/table.json: duplicate {what} {duplicates}.")


def _check_paper(paper, rows, columns, table_path):
    """Raises ConfigError if the reported numbers name rows or columns the table lacks."""
    slugs = {column.slug for column in columns}
    for row_name, by_column in paper.items():
        if row_name not in {row.name for row in rows} or not set(by_column) <= slugs:
            raise ConfigError(
                f"{table_path}/table.json: paper[{row_name!r}] names an unknown row or columns "
                f"{sorted(set(by_column) - slugs)} (columns are {sorted(slugs)})."
            )


def load_table(path):
    """Reads and checks a table directory.

    Args:
        path: the directory holding ``table.json`` and the rows' flagfiles (or a
            table name under ``configs/paper/``).

    Returns:
        A :class:`Table`.

    Raises:
        ConfigError: a malformed ``table.json``, a missing flagfile, a row or
            column setting ``--dataset``/``--target``/``--seed``/``--model_dir``.
    """
    path = resolve_table_path(path)
    json_path = os.path.join(path, "table.json")
    try:
        with open(json_path) as f:
            spec = json.load(f)
    except json.JSONDecodeError as error:
        raise ConfigError(f"{json_path} is not valid JSON: {error}") from error
    _check_keys(spec, _TABLE_KEYS, ("title", "metric", "seeds", "rows", "columns"), json_path)
    rows = tuple(_parse_row(entry, path) for entry in spec["rows"])
    columns = tuple(_parse_column(entry, path) for entry in spec["columns"])
    _unique([row.name for row in rows], "rows", path)
    _check_cache_merges(rows, path)
    _unique([column.slug for column in columns], "column slugs", path)
    paper = spec.get("paper", {})
    _check_paper(paper, rows, columns, path)
    extra_metrics = []
    for entry in spec.get("extra_metrics", ()):
        _check_keys(entry, _EXTRA_METRIC_KEYS, ("metric", "label"), f"{json_path} extra_metrics entry")
        extra_metrics.append(
            ExtraMetric(
                entry["metric"],
                entry["label"],
                float(entry.get("scale", 1)),
                int(entry.get("digits", spec.get("digits", 2))),
            )
        )
    comparisons = []
    row_names = {row.name for row in rows}
    for entry in spec.get("comparisons", ()):
        _check_keys(entry, _COMPARISON_KEYS, ("row", "against"), f"{json_path} comparisons entry")
        for name in (entry["row"], *entry["against"]):
            if name not in row_names:
                raise ConfigError(f"{json_path}: the comparison names {name!r}, which is not a row.")
        comparisons += [(entry["row"], other) for other in entry["against"]]
    return Table(
        name=os.path.basename(os.path.normpath(path)),
        path=path,
        title=spec["title"],
        metric=spec["metric"],
        scale=float(spec.get("scale", 1)),
        digits=int(spec.get("digits", 2)),
        seeds=tuple(int(seed) for seed in spec["seeds"]),
        rows=rows,
        columns=columns,
        paper=paper,
        notes=tuple(spec.get("notes", ())),
        extra_metrics=tuple(extra_metrics),
        metric_label=str(spec.get("metric_label", "")),
        comparisons=tuple(comparisons),
    )


def expand(text, values):
    """Replaces the ``{name}`` placeholders in ``text``.

    Args:
        text: a flag, e.g. ``--teacher={output_dir}/teachers/x.keras``.
        values: a dict holding every name of ``_PLACEHOLDERS``.

    Returns:
        The expanded text.

    Raises:
        ConfigError: an unknown placeholder.
    """

    def substitute(match):
        if match.group(1) not in values:
            raise ConfigError(
                f"Unknown placeholder {match.group(0)} in {text!r}; known: "
                f"{', '.join('{' + name + '}' for name in _PLACEHOLDERS)}."
            )
        return str(values[match.group(1)])

    return re.sub(r"\{(\w+)\}", substitute, text)


def _placeholder_values(column, seed, output_dir):
    return dict(
        dataset=column.dataset,
        dataset_slug=dataset_slug(column.dataset),
        target=column.target,
        seed=seed,
        output_dir=output_dir,
    )


def cell_model_dir(output_dir, table, row, column, seed):
    """``<output_dir>/<table>/<row>/<column slug>/seed<seed>``."""
    return os.path.join(output_dir, table.name, row.name, column.slug, f"seed{seed}")


def _cell_flags(row, column, seed, values):
    """The flags every command of a (row, column, seed) starts with: flagfile, expanded lines, column, cell."""
    templated = [line for line in read_flagfile(row.flagfile) if expand(line, values) != line]
    return (
        f"--flagfile={row.flagfile}",
        *(expand(flag, values) for flag in (*templated, *column.flags)),
        f"--dataset={column.dataset}",
        f"--target={column.target}",
        f"--seed={seed}",
    )


def make_cell(table, row, column, seed, output_dir, extra_flags=(), train_command=None):
    """The :class:`Cell` of one (row, column, seed), with its full command line.

    Args:
        table: the :class:`Table`.
        row: one of its :class:`Row`.
        column: one of its :class:`Column`.
        seed: the ``--seed``.
        output_dir: the grid's base directory.
        extra_flags: flags appended to the command (after the cell's own).
        train_command: the command prefix; ``None`` = ``python tools/train.py``.

    Returns:
        A :class:`Cell`.
    """
    values = _placeholder_values(column, seed, output_dir)
    model_dir = cell_model_dir(output_dir, table, row, column, seed)
    command = (
        *(train_command or (sys.executable, TRAIN_SCRIPT)),
        *_cell_flags(row, column, seed, values),
        f"--model_dir={model_dir}",
        *(expand(flag, values) for flag in extra_flags),
    )
    return Cell(table, row, column, seed, model_dir, command)


def make_cache_cell(table, row, column, output_dir, extra_flags=(), cache_command=None):
    """The :class:`Cell` that builds the soft-label cache a row's runs on ``column`` train from.

    The cache goes where the row's ``--soft_label_cache`` points (after the extra
    flags), with ``row.cache_views`` views drawn with :data:`CACHE_SEED`, or joined
    from the caches of the rows ``row.cache_merge`` names.

    Args:
        table: the :class:`Table`.
        row: a :class:`Row` with ``cache_views`` or ``cache_merge``.
        column: one of the table's :class:`Column`.
        output_dir: the grid's base directory.
        extra_flags: flags appended to the command.
        cache_command: the command prefix; ``None`` = ``python tools/cache_soft_labels.py``.

    Returns:
        A :class:`Cell` of kind ``cache`` whose ``model_dir`` is the cache directory.
    """
    flags, cache_dir = _cache_flags_and_directory(row, column, output_dir, extra_flags)
    prefix = cache_command or (sys.executable, CACHE_SCRIPT)
    if row.cache_merge:
        parts = [
            _cache_flags_and_directory(_row_named(table, name), column, output_dir, extra_flags)[1]
            for name in row.cache_merge
        ]
        command = (*prefix, f"--merge={','.join(parts)}", f"--soft_label_cache={cache_dir}")
    else:
        command = (*prefix, *flags, *row.cache_flags, f"--views={row.cache_views}")
    return Cell(table, row, column, CACHE_SEED, cache_dir, command, kind="cache")


def _cache_flags_and_directory(row, column, output_dir, extra_flags):
    """A row's cell flags for ``column`` at :data:`CACHE_SEED`, and the cache directory they name."""
    values = _placeholder_values(column, CACHE_SEED, output_dir)
    flags = (*_cell_flags(row, column, CACHE_SEED, values), *(expand(flag, values) for flag in extra_flags))
    cache_dir = expand(_flag_value([*read_flagfile(row.flagfile), *flags], "soft_label_cache"), values)
    return flags, os.path.expanduser(cache_dir)


def _row_named(table, name):
    return next(row for row in table.rows if row.name == name)


def _select(items, names, key, what, tables):
    """The items whose ``key`` is in ``names`` (all of them when ``names`` is empty)."""
    if not names:
        return list(items)
    known = {key(item) for table in tables for item in getattr(table, what)}
    unknown = sorted(set(names) - known)
    if unknown:
        raise ConfigError(f"Unknown --{what} {unknown}; the tables have {sorted(known)}.")
    return [item for item in items if key(item) in names]


def _required_cells(table, rows, columns, output_dir, extra_flags, train_command):
    """Cells of the tables the selected ``rows`` require, on the selected columns' datasets, first."""
    datasets = {column.dataset for column in columns}
    cells = []
    for name in dict.fromkeys(name for row in rows for name in row.requires):
        required = load_table(os.path.join(os.path.dirname(os.path.normpath(table.path)), name))
        required_columns = [column for column in required.columns if column.dataset in datasets]
        cells += plan_table(
            required, required.rows, required_columns, required.seeds, output_dir, extra_flags, train_command
        )
    return cells


def plan_table(table, rows, columns, seeds, output_dir, extra_flags=(), train_command=None):
    """Every cell of ``rows`` x ``columns`` x ``seeds``, after the cells they require.

    Args:
        table: the :class:`Table`.
        rows: the rows to run (of ``table.rows``).
        columns: the columns to run (of ``table.columns``).
        seeds: the seeds.
        output_dir: the grid's base directory.
        extra_flags: flags appended to every command.
        train_command: the command prefix of training runs and of cache building;
            ``None`` = ``python tools/train.py`` or ``tools/cache_soft_labels.py``.

    Returns:
        A list of :class:`Cell`: required tables' cells, then rows x columns x seeds
        in that order (a row with ``cache_views`` builds its cache first; one with
        ``cache_merge`` the caches it joins, then its own).
    """
    cells = _required_cells(table, rows, columns, output_dir, extra_flags, train_command)
    for row in rows:
        for column in columns:
            # A cache two rows share is planned twice; plan() keeps its first cell.
            for cache_row in [*(_row_named(table, name) for name in row.cache_merge), row]:
                if cache_row.builds_cache:
                    cells.append(make_cache_cell(table, cache_row, column, output_dir, extra_flags, train_command))
            cells += [make_cell(table, row, column, seed, output_dir, extra_flags, train_command) for seed in seeds]
    return cells


def plan(tables, seeds=(), rows=(), columns=(), output_dir="runs/paper", extra_flags=(), train_command=None):
    """The cells of several tables, in order, each run once.

    Args:
        tables: :class:`Table` objects.
        seeds: seeds overriding each table's own (empty = the tables' seeds).
        rows: row names to run (empty = all).
        columns: column slugs to run (empty = all).
        output_dir: the grid's base directory.
        extra_flags: flags appended to every command.
        train_command: the command prefix; ``None`` = ``python tools/train.py``.

    Returns:
        A list of :class:`Cell` without repeats (a teacher two tables require runs once).

    Raises:
        ConfigError: a row or column name no table has.
    """
    cells = []
    for table in tables:
        cells += plan_table(
            table,
            _select(table.rows, rows, lambda row: row.name, "rows", tables),
            _select(table.columns, columns, lambda column: column.slug, "columns", tables),
            tuple(seeds) or table.seeds,
            output_dir,
            extra_flags,
            train_command,
        )
    return _first_of_each(cells, lambda cell: cell.model_dir)


def _first_of_each(items, key):
    """``items`` in order, without the later ones whose ``key`` came before."""
    first = {}
    for item in items:
        first.setdefault(key(item), item)
    return list(first.values())


def read_metric(results_path, metric):
    """The ``metric`` of a run's results.json, or ``None`` when it is absent or null."""
    with open(results_path) as f:
        value = json.load(f).get(metric)
    return None if value is None else float(value)


def _error_line(log_path):
    """A failed run's reason: the log's last ``error: ...`` line (train.py's bad-input report), else its last line."""
    with open(log_path, errors="replace") as f:
        lines = [line.strip() for line in f if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    return (errors or lines or [""])[-1]


def run_cell(cell):
    """Runs one cell, appending its output to ``<model_dir>/<kind>.log`` (``train.log``, ``cache.log``).

    Args:
        cell: a :class:`Cell` without ``results.json`` yet.

    Returns:
        ``(error, seconds)``: ``error`` is ``None`` on success, else a one-line
        reason (exit status and the log's last line).
    """
    os.makedirs(cell.model_dir, exist_ok=True)
    log_path = os.path.join(cell.model_dir, f"{cell.kind}.log")
    start = time.time()
    with open(log_path, "a") as log:
        log.write(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} {shlex.join(cell.command)}\n")
        log.flush()
        status = subprocess.run(cell.command, stdout=log, stderr=subprocess.STDOUT).returncode
    seconds = time.time() - start
    if status != 0:
        return f"exit {status}, see {log_path}: {_error_line(log_path)}", seconds
    if not os.path.exists(cell.results_path):
        return f"exit 0 without {cell.results_path}, see {log_path}", seconds
    return None, seconds


def run_grid(cells, out=None):
    """Runs the cells without ``results.json``, printing one progress line each.

    A failed cell is reported and the grid goes on.

    Args:
        cells: :class:`Cell` objects, in order.
        out: text stream for progress (default ``sys.stdout``).

    Returns:
        A list of ``(cell, reason)`` for the failed cells.
    """
    out = out or sys.stdout
    failed = []
    for index, cell in enumerate(cells, 1):
        print(f"[{index}/{len(cells)}] {cell.description} ...", end=" ", file=out, flush=True)
        if os.path.exists(cell.results_path):
            print("skipped (results.json exists)", file=out, flush=True)
            continue
        error, seconds = run_cell(cell)
        if error:
            failed.append((cell, error))
            print(f"FAILED after {seconds:.1f}s ({error})", file=out, flush=True)
        elif cell.kind == "cache":
            print(f"done in {seconds:.1f}s", file=out, flush=True)
        else:
            value = read_metric(cell.results_path, cell.table.metric)
            print(
                f"done in {seconds:.1f}s, {cell.table.metric}={value if value is None else f'{value:.4f}'}",
                file=out,
                flush=True,
            )
    return failed


def collect(table, output_dir, seeds=None):
    """The results of every cell of ``table`` (all rows and columns) that finished.

    Args:
        table: a :class:`Table`.
        output_dir: the grid's base directory.
        seeds: seeds to gather (default ``table.seeds``); other seed folders are ignored.

    Returns:
        A list of records ``{"row", "column", "dataset", "target", "seed", "metric",
        "value", "path"}``; ``value`` is ``None`` when results.json lacks the metric;
        ``path`` is relative to the table's directory (where the table's own results.json
        goes), so the records read the same however ``output_dir`` was spelled.
        A table with ``extra_metrics`` adds ``"extra": {metric: value}``.
    """
    records, table_dir = [], os.path.join(output_dir, table.name)
    for row in table.rows:
        for column in table.columns:
            for seed in seeds or table.seeds:
                path = os.path.join(cell_model_dir(output_dir, table, row, column, seed), "results.json")
                if os.path.exists(path):
                    record = dict(
                        row=row.name,
                        column=column.slug,
                        dataset=column.dataset,
                        target=column.target,
                        seed=seed,
                        metric=table.metric,
                        value=read_metric(path, table.metric),
                        path=os.path.relpath(path, table_dir),
                    )
                    if table.extra_metrics:
                        record["extra"] = {
                            extra.metric: read_metric(path, extra.metric) for extra in table.extra_metrics
                        }
                    records.append(record)
    return records


def format_cell(values, seeds_asked, digits=2, paper=None):
    """One table cell: ``mean ± std`` of the (already scaled) values.

    Args:
        values: the values found (``None`` entries are not counted).
        seeds_asked: how many seeds the table asks for.
        digits: decimals.
        paper: the paper's reported string, shown in parentheses.

    Returns:
        e.g. ``91.00 ± 1.00``, ``91.23 ± 0.10 (n=2)`` (fewer seeds than asked),
        ``91.23 (n=1)``, ``–`` (nothing), each followed by `` (paper: 92.46±0.15)``
        when ``paper`` is given. The std is the sample std (ddof=1).
    """
    values = [v for v in values if v is not None]
    if not values:
        text = MISSING
    elif len(values) == 1:
        text = f"{values[0]:.{digits}f} (n=1)"
    else:
        text = f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"
        if len(values) < seeds_asked:
            text += f" (n={len(values)})"
    return f"{text} (paper: {paper})" if paper else text


def paired_difference(values, others):
    """The mean difference ``values - others`` over the seeds both have, with its 95% interval.

    Args:
        values: ``{seed: value}`` of one row (one column).
        others: ``{seed: value}`` of the row it is compared with.

    Returns:
        ``{"seeds": [...], "differences": [...], "mean": m, "low": l, "high": h}``; ``low``
        and ``high`` (Student's t interval of the mean) are None with fewer than two shared
        seeds; ``mean`` is None with none.
    """
    seeds = sorted(seed for seed in values if seed in others and values[seed] is not None and others[seed] is not None)
    differences = [values[seed] - others[seed] for seed in seeds]
    result = {"seeds": seeds, "differences": differences, "mean": None, "low": None, "high": None}
    if differences:
        result["mean"] = statistics.mean(differences)
    if len(differences) >= 2:
        t = _T_95[min(len(differences) - 1, len(_T_95)) - 1]
        half = t * statistics.stdev(differences) / len(differences) ** 0.5
        result.update(low=result["mean"] - half, high=result["mean"] + half)
    return result


def _values_by_seed(table, records, row, column):
    """``{seed: scaled value}`` of one row in one column."""
    return {
        r["seed"]: r["value"] * table.scale
        for r in records
        if (r["row"], r["column"]) == (row, column.slug) and r["value"] is not None
    }


def _comparison_lines(table, records):
    """The markdown section of ``table.comparisons``: one line per pair and column."""
    labels = {row.name: row.label for row in table.rows}
    lines = [
        "",
        f"Paired differences (row minus the row it is compared with, same seed and column; {table.metric}"
        f"{f' x {table.scale:g}' if table.scale != 1 else ''}; 95% interval: Student's t over the shared seeds):",
        "",
        "| Row | against | " + ("column | " if len(table.columns) > 1 else "") + "difference | 95% interval | seeds |",
        "|---|---|" + ("---|" if len(table.columns) > 1 else "") + "---|---|---|",
    ]
    for row, other in table.comparisons:
        for column in table.columns:
            paired = paired_difference(*(_values_by_seed(table, records, name, column) for name in (row, other)))
            digits = table.digits
            mean = MISSING if paired["mean"] is None else f"{paired['mean']:+.{digits}f}"
            interval = (
                MISSING if paired["low"] is None else f"[{paired['low']:+.{digits}f}, {paired['high']:+.{digits}f}]"
            )
            seeds = ", ".join(map(str, paired["seeds"])) or MISSING
            column_cell = f"{column.label} | " if len(table.columns) > 1 else ""
            lines.append(f"| {labels[row]} | {labels[other]} | {column_cell}{mean} | {interval} | {seeds} |")
    return lines


def markdown(table, records, seeds=None):
    """The table in the paper's layout, as markdown.

    Args:
        table: a :class:`Table`.
        records: :func:`collect`'s records.
        seeds: the seeds asked for (default ``table.seeds``).

    Returns:
        Markdown text: a heading, a line on the metric, the table, the notes.
    """
    seeds = tuple(seeds or table.seeds)
    scale = f" x {table.scale:g}" if table.scale != 1 else ""
    extras = "".join(
        f"; {extra.label}: `{extra.metric}`" + (f" x {extra.scale:.4g}" if extra.scale != 1 else "")
        for extra in table.extra_metrics
    )
    single = len(table.columns) == 1
    headers = [
        header
        for column in table.columns
        for header in (
            f"{column.label} ({table.metric_label})" if table.metric_label else column.label,
            *(extra.label if single else f"{column.label}: {extra.label}" for extra in table.extra_metrics),
        )
    ]
    lines = [
        f"## {table.title}",
        "",
        f"`{table.metric}`{scale}{extras}; mean ± sample std over seeds {', '.join(map(str, seeds))}; (n=k): only k "
        f"runs found; {MISSING}: none; (paper: ...): the number the paper reports.",
        "",
        "| Method | " + " | ".join(headers) + " |",
        "|---" * (len(headers) + 1) + "|",
    ]
    for row in table.rows:
        cells = []
        for column in table.columns:
            mine = [r for r in records if (r["row"], r["column"]) == (row.name, column.slug)]
            values = [r["value"] * table.scale for r in mine if r["value"] is not None]
            cells.append(format_cell(values, len(seeds), table.digits, table.paper.get(row.name, {}).get(column.slug)))
            for extra in table.extra_metrics:
                values = [r["extra"][extra.metric] * extra.scale for r in mine if r["extra"][extra.metric] is not None]
                cells.append(format_cell(values, len(seeds), extra.digits))
        lines.append(f"| {row.label} | " + " | ".join(cells) + " |")
    if table.comparisons:
        lines += _comparison_lines(table, records)
    if table.notes:
        lines += ["", "Notes:", *(f"- {note}" for note in table.notes)]
    return "\n".join(lines) + "\n"


def write_collection(table, output_dir, seeds=None, out=None):
    """Gathers ``table``'s results into ``<output_dir>/<table>/results.{json,md}`` and prints the markdown.

    Args:
        table: a :class:`Table`.
        output_dir: the grid's base directory.
        seeds: the seeds asked for (default ``table.seeds``).
        out: text stream to print to (default ``sys.stdout``).

    Returns:
        The markdown text.
    """
    records = collect(table, output_dir, seeds)
    text = markdown(table, records, seeds)
    table_dir = os.path.join(output_dir, table.name)
    os.makedirs(table_dir, exist_ok=True)
    with open(os.path.join(table_dir, "results.json"), "w") as f:
        json.dump(records, f, indent=2)
    with open(os.path.join(table_dir, "results.md"), "w") as f:
        f.write(text)
    print(f"\n{text}\n(written to {table_dir}/results.md and results.json)", file=out or sys.stdout)
    return text


def plot_table(table, output_dir, seeds=None):
    """Draws the learning curves of ``table``'s finished runs into ``<output_dir>/<table>/curves.png``.

    One line per row (per row and column when the table has several columns):
    the mean over the seeds whose run finished (``results.json``), with a ± std band.

    Args:
        table: a :class:`Table`.
        output_dir: the grid's base directory.
        seeds: the seeds to draw (default ``table.seeds``).

    Returns:
        The image's path, or None when no run has finished yet.
    """
    groups = {}
    for row in table.rows:
        for column in table.columns:
            runs = [cell_model_dir(output_dir, table, row, column, seed) for seed in seeds or table.seeds]
            runs = [run for run in runs if os.path.exists(os.path.join(run, "results.json"))]
            if runs:
                groups[row.label if len(table.columns) == 1 else f"{row.label} / {column.label}"] = runs
    if not groups:
        return None
    path = os.path.join(output_dir, table.name, "curves.png")
    learning_curves.plot_groups(groups, path, title=table.title)
    return path


def print_commands(cells, out=None):
    """Prints each cell's command (a shell line); cells with results.json as comments.

    Args:
        cells: :class:`Cell` objects.
        out: text stream (default ``sys.stdout``).
    """
    out = out or sys.stdout
    for cell in cells:
        done = "# done (results.json exists): " if os.path.exists(cell.results_path) else ""
        print(done + shlex.join(cell.command), file=out)


def reproduce(
    tables,
    seeds=(),
    rows=(),
    columns=(),
    output_dir="runs/paper",
    extra_flags=(),
    dry_run=False,
    collect_only=False,
    train_command=None,
    out=None,
    plot=False,
):
    """Runs (or lists, or only collects) the grid of one or more tables, then writes their results tables.

    Args:
        tables: table directories (or names under ``configs/paper/``).
        seeds: seeds overriding the named tables' own (empty = theirs); tables a row
            requires always run their own seeds. The results tables written after a run
            show the tables' own seeds and these; with ``collect_only``, these alone.
        rows: row names to run (empty = all); results tables always show every row.
        columns: column slugs to run (empty = all).
        output_dir: the grid's base directory.
        extra_flags: flags appended to every command (a list, or one shell-quoted string).
        dry_run: print the commands, run and write nothing.
        collect_only: train nothing; only write the results tables of ``tables``.
        train_command: the command prefix of every cell; ``None`` = ``python tools/train.py``.
        out: text stream for progress and tables (default ``sys.stdout``).
        plot: also draw each results table's learning curves
            (``curves.png`` beside its ``results.md``, :func:`plot_table`).

    Returns:
        A list of ``(cell, reason)`` for the failed cells (empty: all went well).

    Raises:
        ConfigError: bad tables, unknown rows or columns, both ``dry_run`` and ``collect_only``.
    """
    if dry_run and collect_only:
        raise ConfigError("--dry_run and --collect_only exclude each other.")
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise ConfigError(f"--output_dir={output_dir} is a file; the runs need a directory there.")
    out = out or sys.stdout
    loaded = [load_table(table) for table in tables]
    if isinstance(extra_flags, str):
        extra_flags = shlex.split(extra_flags)
    cells = plan(loaded, seeds, rows, columns, output_dir, extra_flags, train_command)
    if dry_run:
        print_commands(cells, out)
        return []
    failed = [] if collect_only else run_grid(cells, out)
    # The results show the table's own seeds plus those asked for, so a run that fills in one
    # seed (--seeds=2) does not shrink the table to that seed; --collect_only --seeds=... shows
    # exactly the seeds asked for. A required table shows its own.
    if collect_only:
        seeds_of = {table.name: tuple(seeds) or table.seeds for table in loaded}
    else:
        seeds_of = {table.name: tuple(sorted({*table.seeds, *seeds})) for table in loaded}
    shown = loaded if collect_only else _first_of_each([cell.table for cell in cells] + loaded, lambda t: t.name)
    for table in shown:
        write_collection(table, output_dir, seeds_of.get(table.name, table.seeds), out)
        if plot:
            path = plot_table(table, output_dir, seeds_of.get(table.name, table.seeds))
            print(f"(learning curves: {path or 'no run with a history.csv yet'})", file=out)
    if failed:
        print(f"\n{len(failed)} of {len(cells)} cells failed:", file=out)
        for cell, reason in failed:
            print(f"  {cell.description}: {reason}", file=out)
    return failed
