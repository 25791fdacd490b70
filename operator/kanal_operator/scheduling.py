"""Task placement: balanced across live workers, and sticky.

A task stays on its worker while that worker lives, so nothing restarts without a
reason. New and orphaned tasks go to the worker with the fewest tasks of the same
connector, then the fewest tasks overall. When workers join, load moves gradually: at
most one task of a connector per round is revoked from the busiest worker, and a task
is placed again only after every live worker stopped reporting it, so a source task
never runs twice (Kafka Connect's incremental cooperative rebalancing does the same in
two rounds).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence


def assign(tasks: Sequence[int], previous: Mapping[int, str | None], workers: Collection[str],
           load: Mapping[str, int], held: Collection[int] = ()) -> dict[int, str | None]:
    """The worker of each task of one connector (None: not placed this round).

    ``previous`` is the current placement, ``workers`` the live workers, ``load`` the
    number of tasks of *other* connectors per worker, ``held`` the tasks a live worker
    other than their assignee still runs (they wait until it stopped them).
    """
    live = sorted(workers)
    if not live:
        return dict.fromkeys(tasks)
    total = {w: load.get(w, 0) for w in live}
    own = dict.fromkeys(live, 0)
    placement: dict[int, str | None] = {}
    for task in tasks:
        worker = previous.get(task)
        if worker in total:
            placement[task] = worker
            total[worker] += 1
            own[worker] += 1
    for task in tasks:
        if task in placement:
            continue
        if task in held:
            placement[task] = None
            continue
        worker = min(live, key=lambda w: (own[w], total[w], w))
        placement[task] = worker
        total[worker] += 1
        own[worker] += 1
    if all(placement[t] is not None for t in tasks):
        _revoke_one(placement, total, own)
    return {task: placement[task] for task in tasks}


def _revoke_one(placement: dict[int, str | None], total: dict[str, int],
                own: dict[str, int]) -> None:
    """Revoke one task from the busiest worker when another has two or more fewer."""
    busiest = max(total, key=lambda w: (total[w], own[w], w))
    idlest = min(total, key=lambda w: (total[w], own[w], w))
    if total[busiest] - total[idlest] < 2 or own[busiest] == 0:
        return
    task = max(t for t, w in placement.items() if w == busiest)
    placement[task] = None
