"""Figures as Markdown: the run's header, then a table per section with a column per
fast path mode, and the references' own figures in a table of their own below it."""

from __future__ import annotations

from collections.abc import Callable

from .figures import Figure


def results(figures: list[Figure], info: dict[str, object], command: str, level: int = 2) -> str:
    """The header paragraph and every section, sections at heading `level`."""
    lines = header(info, command)
    sections: dict[str, list[Figure]] = {}
    for f in figures:
        sections.setdefault(f.section, []).append(f)
    for title, members in sections.items():
        lines += [f"{'#' * level} {title}", ""]
        ours = [f for f in members if f.fast_path]
        alone = [f for f in members if not f.fast_path]
        if ours:
            lines += by_mode(ours) + [""]
        if alone:
            lines += references(alone) + [""]
    return "\n".join(lines)


def header(info: dict[str, object], command: str) -> list[str]:
    return [
        f"`{command}` on {info['date']}.",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB RAM, "
        f"Linux {info['kernel']}; Python {info['python']}, uvicorn {info['uvicorn']} "
        f"(uvloop {info['uvloop']}, httptools {info['httptools']}), Starlette {info['starlette']}; "
        f"Node {info['node']}, @tus/server {info['tus_server']}, undici {info['undici']}. "
        f"Load average {info['load_average_at_start']:.2f} at the start, "
        f"{info['load_average_at_end']:.2f} at the end (the cores are shared: figures are "
        "medians of the repeats, best in brackets).",
        "",
        "Every server, client and Redis ran on this one machine over loopback; MB = 10^6 bytes. "
        f"This service ran as configured by default, {info.get('server_processes', '?')} "
        "processes (one per CPU), and so did the bare references, unless a row says otherwise; "
        '"fast path on/off" is its UPLOAD_FAST_PATH.',
        "",
    ]


def by_mode(figures: list[Figure]) -> list[str]:
    """One row per measure, a value column and a ratio column per fast path mode."""
    modes = list(dict.fromkeys(f.fast_path for f in figures))
    rows: dict[str, dict[str, Figure]] = {}
    for f in figures:
        rows.setdefault(f.name, {})[f.fast_path] = f
    ratios = ["ratio"] if len(modes) == 1 else [f"{m} ÷ reference" for m in modes]
    head = ["measure", *(f"fast path {m}" for m in modes), "reference", *ratios, "target", "met"]
    lines = [_row(head), _row(["---"] * len(head))]
    for name, by in rows.items():
        present = [by[m] for m in modes if m in by]
        cells = [_name(name, present)]
        cells += [_value(by[m]) if m in by else "–" for m in modes]
        cells.append(_references_of(present))
        cells += [_ratio(by[m]) if m in by else "–" for m in modes]
        cells.append(present[0].target or "–")
        cells.append(_shared(present, _met))
        lines.append(_row(cells))
    return lines


def references(figures: list[Figure]) -> list[str]:
    head = ["reference alone", "value", "reference", "ratio", "target", "met"]
    lines = [_row(head), _row(["---"] * len(head))]
    for f in figures:
        cells = [_name(f.name, [f]), _value(f), _reference(f), _ratio(f), f.target or "–", _met(f)]
        lines.append(_row(cells))
    return lines


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _name(name: str, figures: list[Figure]) -> str:
    notes = {f.fast_path: f.note for f in figures if f.note}
    if not notes:
        return name
    if len(set(notes.values())) == 1 or len(figures) == 1:
        return f"{name} — {next(iter(notes.values()))}"
    return f"{name} — " + "; ".join(f"{mode}: {note}" for mode, note in notes.items())


def _shared(figures: list[Figure], cell: Callable[[Figure], str]) -> str:
    """The cell once when every mode has the same, else each mode's, in order."""
    texts = list(dict.fromkeys(cell(f) for f in figures))
    return texts[0] if len(texts) == 1 else " · ".join(texts)


def _references_of(figures: list[Figure]) -> str:
    """One reference for every mode, or one name with each mode's value."""
    names = {f.reference_name for f in figures}
    if len(names) > 1 or any(f.reference is None for f in figures):
        return _shared(figures, _reference)
    values = list(dict.fromkeys(_reference_value(f) for f in figures))
    return f"{names.pop()}: {' · '.join(values)}"


def _value(f: Figure) -> str:
    return _fmt(f.value, f.unit) + _best(f.samples, f.unit, f.higher_is_better)


def _reference(f: Figure) -> str:
    if f.reference is None:
        return f.reference_name or "–"
    return f"{f.reference_name}: {_reference_value(f)}"


def _reference_value(f: Figure) -> str:
    return _fmt(f.reference, f.unit) + _best(f.reference_samples, f.unit, f.higher_is_better)


def _ratio(f: Figure) -> str:
    return "–" if f.ratio is None else f"{f.ratio:.2f}x"


def _met(f: Figure) -> str:
    return {True: "yes", False: "**no**", None: "–"}[f.met]


def _best(samples: list[float], unit: str, higher_is_better: bool) -> str:
    if len(samples) < 2:
        return ""
    return f" ({_number(max(samples) if higher_is_better else min(samples), unit)})"


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "–"
    return f"{_number(value, unit)} {unit}".strip()


def _number(value: float, unit: str) -> str:
    if (not unit and float(value).is_integer()) or abs(value) >= 100:  # a count, or large
        return f"{value:,.0f}"
    if abs(value) < 10:
        return f"{value:,.2f}"
    return f"{value:,.1f}"
