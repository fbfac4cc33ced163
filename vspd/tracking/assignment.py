"""The best one-to-one pairing of tracks and detections: the assignment problem, exactly.

The Hungarian method (shortest augmenting paths with potentials, O(n^2 m)) in plain
Python. A camera's frame has a handful of tracks and detections, so this costs
microseconds, and the broker need not import SciPy (~45 MB resident with NumPy) for it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def best_pairs(scores: Sequence[Sequence[float]]) -> list[tuple[int, int]]:
    """(row, column) pairs, each row and column at most once, of the largest total score.

    Pairs whose score is not positive are left out (a zero means "may not be paired"); a
    score that is not a finite number counts as zero (with NaN the search never settles).
    """
    scores = [[x if math.isfinite(x) and x > 0 else 0.0 for x in row] for row in scores]
    rows = len(scores)
    columns = len(scores[0]) if rows else 0
    if not rows or not columns:
        return []
    if rows > columns:  # the method below wants no more rows than columns
        flipped = best_pairs([[scores[r][c] for r in range(rows)] for c in range(columns)])
        return sorted((r, c) for c, r in flipped)
    # Minimise cost = -score. Index 0 is the method's sentinel; rows and columns from 1.
    row_potential = [0.0] * (rows + 1)
    column_potential = [0.0] * (columns + 1)
    owner = [0] * (columns + 1)  # owner[c]: the row assigned to column c (0: none)
    previous = [0] * (columns + 1)
    for row in range(1, rows + 1):
        owner[0] = row
        column = 0
        slack = [math.inf] * (columns + 1)
        visited = [False] * (columns + 1)
        while owner[column] != 0:
            visited[column] = True
            current_row = owner[column]
            delta, next_column = math.inf, 0
            for c in range(1, columns + 1):
                if visited[c]:
                    continue
                reduced = (
                    -scores[current_row - 1][c - 1]
                    - row_potential[current_row]
                    - column_potential[c]
                )
                if reduced < slack[c]:
                    slack[c], previous[c] = reduced, column
                if slack[c] < delta:
                    delta, next_column = slack[c], c
            for c in range(columns + 1):
                if visited[c]:
                    row_potential[owner[c]] += delta
                    column_potential[c] -= delta
                else:
                    slack[c] -= delta
            column = next_column
        while column:  # flip the augmenting path
            before = previous[column]
            owner[column] = owner[before]
            column = before
    return sorted(
        (owner[c] - 1, c - 1)
        for c in range(1, columns + 1)
        if owner[c] and scores[owner[c] - 1][c - 1] > 0
    )
