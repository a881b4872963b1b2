"""Reports for people: the matrix as a rich table, and one game as a self-contained HTML page
(inline SVG): the bisection narrowing over the transaction index, move by move, and both chess
clocks over the chain's time.
"""

from __future__ import annotations

import html
from typing import Any

from rich.console import Console
from rich.table import Table

from harness.lab import Result
from harness.observer import GameLog


def table(results: list[Result], console: Console) -> None:
    t = Table(title="Rampart fault matrix", show_lines=False)
    for col in ("scenario", "expected", "winner", "detected by", "moves", "step on", "s", "balances", ""):
        t.add_column(col)
    for r in results:
        step = _step_name(r)
        t.add_row(r.name, r.expected_winner, r.winner or "-", r.detected_by or "-", str(r.moves), step,
                  "-" if r.seconds is None else f"{r.seconds:.1f}",
                  "[green]match[/]" if r.balances_match_honest_replay else "[red]differ[/]",
                  "[green]ok[/]" if r.ok else "[red]FAIL[/]")
    console.print(t)
    for r in results:
        if r.error or not r.ok:
            console.print(f"[red]{r.name}[/]: {r.error or ''} {r.balance_detail if not r.balances_match_honest_replay else ''}")
    ok = sum(r.ok for r in results)
    console.print(f"{ok}/{len(results)} scenarios ended as expected")


def game_picture(game: GameLog, block_time: Any, title: str, tx_names: dict[int, str] | None = None) -> str:
    """One game as HTML: the interval [lo, hi] after every move, and the two clocks over time."""
    states = [m for m in game.moves if "game" in m]
    if not states:
        return "<p>no moves</p>"
    top = max(int(states[0]["game"]["hi"]), 1)
    w, h, left, pad = 760, 320, 70, 30
    n = len(states) + (1 if game.step else 0)
    xs = (w - left - pad) / max(n, 1)

    def y(i: float) -> float:
        return pad + (h - 2 * pad) * i / top

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">',
             f'<text x="{left}" y="16" font-weight="bold">bisection over the transaction index (0..{top})</text>']
    for k in range(0, top + 1, max(1, top // 8)):
        parts.append(f'<line x1="{left - 4}" x2="{w - pad}" y1="{y(k):.1f}" y2="{y(k):.1f}" stroke="#eee"/>'
                     f'<text x="{left - 8}" y="{y(k) + 4:.1f}" text-anchor="end">{k}</text>')
    n_txs = int(states[0]["game"]["tx_count"])
    if n_txs < top:  # the trace is padded to a power of two: beyond n, the post root
        parts.append(f'<line x1="{left}" x2="{w - pad}" y1="{y(n_txs):.1f}" y2="{y(n_txs):.1f}" stroke="#c0392b" '
                     f'stroke-dasharray="4 3"/><text x="{w - pad}" y="{y(n_txs) - 3:.1f}" text-anchor="end" '
                     f'fill="#c0392b">{n_txs} transactions; padding below</text>')
    for i, m in enumerate(states):
        g = m["game"]
        lo, hi = int(g["lo"]), int(g["hi"])
        x = left + i * xs
        colour = {"open": "#888", "reveal": "#d9822b", "answer": "#2b6cd9"}.get(m["kind"], "#888")
        parts.append(f'<rect x="{x + 2:.1f}" y="{y(lo):.1f}" width="{xs - 4:.1f}" height="{max(y(hi) - y(lo), 2):.1f}" '
                     f'fill="{colour}" opacity="0.55"><title>{html.escape(_label(m))}: [{lo}, {hi}]</title></rect>')
        if m["kind"] == "reveal":
            mid = (lo + hi) // 2
            parts.append(f'<line x1="{x + 2:.1f}" x2="{x + xs - 2:.1f}" y1="{y(mid):.1f}" y2="{y(mid):.1f}" '
                         f'stroke="#000" stroke-width="2"><title>root revealed at {mid}</title></line>')
        parts.append(f'<text x="{x + xs / 2:.1f}" y="{h - 8}" text-anchor="middle">{html.escape(_short(m))}</text>')
    if game.step:
        x = left + len(states) * xs
        idx = int(game.step["index"])
        colour = "#c0392b" if game.step["rejected"] or game.status == "challenger_won" else "#27ae60"
        parts.append(f'<rect x="{x + 2:.1f}" y="{y(idx):.1f}" width="{xs - 4:.1f}" height="{max(y(idx + 1) - y(idx), 3):.1f}" '
                     f'fill="{colour}"><title>one-step proof of transaction {idx}</title></rect>'
                     f'<text x="{x + xs / 2:.1f}" y="{h - 8}" text-anchor="middle">step</text>')
    parts.append("</svg>")
    bisect = "".join(parts)

    # clocks: each side's time left, running for the side to move, against the chain's time
    times = [block_time(int(m["block"])) for m in states]
    end = next((block_time(int(m["block"])) for m in game.moves if m["kind"] in ("resolve", "step")), times[-1])
    t0, t1 = times[0], max(end, times[-1], times[0] + 1)
    lines: dict[int, list[tuple[int, int]]] = {0: [], 1: []}
    for i, m in enumerate(states):
        g = m["game"]
        t_next = times[i + 1] if i + 1 < len(states) else end
        for seat in (0, 1):
            left_now = int(g["clocks"][seat])
            lines[seat].append((times[i], left_now))
            running = seat == int(g["turn"]) and int(g["status"]) == 0
            lines[seat].append((t_next, left_now - (t_next - times[i]) if running else left_now))
    clock_max = max(v for pts in lines.values() for _, v in pts)
    clock_min = min(0, min(v for pts in lines.values() for _, v in pts))
    ch = 240

    def cx(t: int) -> float:
        return left + (w - left - pad) * (t - t0) / (t1 - t0)

    def cy(v: int) -> float:
        return pad + (ch - 2 * pad) * (clock_max - v) / max(clock_max - clock_min, 1)

    clocks = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{ch}" font-family="sans-serif" font-size="11">',
              f'<text x="{left}" y="16" font-weight="bold">chess clocks: seconds left, over chain time</text>',
              f'<line x1="{left}" x2="{left}" y1="{pad}" y2="{ch - pad}" stroke="#444"/>',
              f'<line x1="{left}" x2="{w - pad}" y1="{cy(0):.1f}" y2="{cy(0):.1f}" stroke="#444"/>',
              f'<text x="{left - 6}" y="{cy(clock_max) + 4:.1f}" text-anchor="end">{clock_max}</text>',
              f'<text x="{left - 6}" y="{cy(0) + 4:.1f}" text-anchor="end">0</text>',
              f'<text x="{left}" y="{ch - 8}">opened</text>',
              f'<text x="{w - pad}" y="{ch - 8}" text-anchor="end">+{t1 - t0} s</text>']
    for seat, colour, name, dy in ((0, "#d9822b", "sequencer", -4), (1, "#2b6cd9", "challenger", 12)):
        pts = " ".join(f"{cx(t):.1f},{cy(v):.1f}" for t, v in lines[seat])
        last = lines[seat][-1][1]
        clocks.append(f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="2"/>'
                      f'<text x="{w - pad - 4}" y="{cy(last) + dy:.1f}" text-anchor="end" fill="{colour}">{name} ({f"{last} s left" if last > 0 else "ran out"})</text>')
    clocks.append("</svg>")
    rows = "".join(f"<tr><td>{i}</td><td>{html.escape(_label(m))}</td><td>[{m['game']['lo']}, {m['game']['hi']}]</td>"
                   f"<td>{m['game']['clocks'][0]} / {m['game']['clocks'][1]}</td><td>{block_time(int(m['block'])) - t0}</td></tr>"
                   for i, m in enumerate(states))
    step = ""
    if game.step:
        name = (tx_names or {}).get(int(game.step["index"]), f"transaction {game.step['index']}")
        verdict = "rejected by the rules" if game.step["rejected"] else f"post-root {game.step['outcome']}"
        step = f"<p><b>one-step proof</b> by the {game.step['seat']}: {html.escape(name)} — {verdict}</p>"
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            "<style>body{font-family:sans-serif;margin:2em}td,th{padding:2px 10px;text-align:left}</style></head><body>"
            f"<h2>{html.escape(title)}</h2><p>game {game.game_id} on batch {game.batch_id}, challenger {game.challenger}: "
            f"<b>{game.status}</b>; payout {game.payout}</p>{step}{bisect}<br>{clocks}"
            "<table><tr><th>#</th><th>move</th><th>interval after</th><th>clocks seq / chal</th><th>t</th></tr>"
            f"{rows}</table></body></html>")


def _step_name(r: Result) -> str:
    """The one-step proof's transaction, short: "#7 Liquidate"."""
    if r.refused:
        return f"refused: {r.refused}"
    if not r.step:
        return "-"
    index, _, rest = str(r.step["tx"]).partition(": ")
    return f"#{index} {rest.split('(')[0]}" if rest else str(r.step["tx"])


def _label(m: dict[str, Any]) -> str:
    if m["kind"] == "reveal":
        return f"sequencer reveals {str(m.get('root', ''))[:12]}…"
    if m["kind"] == "answer":
        return f"challenger {'agrees' if m.get('agree') else 'disagrees'}"
    return "opened"


def _short(m: dict[str, Any]) -> str:
    return {"reveal": "R", "answer": "A" if m.get("agree") else "D", "open": "open"}.get(m["kind"], m["kind"])
