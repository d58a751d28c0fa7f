"""The statistics of a study's tables, over plain lists of numbers and result rows.

* :func:`welch`: one comparison of two groups of runs, Welch's t-test and interval;
* :func:`holm`, :func:`holm_family`: the comparisons of a study as one family, Holm-corrected;
* :func:`correlation`: Spearman's rho of test accuracy with a connectivity measure, pooled and
  within strata;
* :func:`accuracy_auc`, :func:`epochs_to`, :func:`convergence`: how fast a run's test accuracy
  rises, from its curve (test accuracy per evaluated epoch).
"""
import numpy as np
from scipy import stats

ALPHA = 0.05
SKIP_KEY, METHOD_KEY = 'skip.kind', 'pruning.method'
DENSE_FRACTION = 0.9  # epochs_to_90pct_dense: the epoch a run reaches this share of dense accuracy


def verdict(diff: float, significant: bool) -> str:
  """``better``/``worse`` by the sign of ``diff`` where ``significant``, else ``inconclusive``."""
  return ('better' if diff > 0 else 'worse') if significant else 'inconclusive'


def welch(a, b, level: float = 0.95) -> dict:
  """``diff = mean(a) - mean(b)``, its Welch interval and Welch's two-sided t-test.

  With ``v_a = s_a^2 / n_a``, ``v_b = s_b^2 / n_b`` (sample variances, ddof 1): ``t = diff /
  sqrt(v_a + v_b)`` on the Welch-Satterthwaite degrees of freedom ``nu = (v_a + v_b)^2 /
  (v_a^2 / (n_a - 1) + v_b^2 / (n_b - 1))``, ``p_value = 2 P(T_nu > |t|)`` and ``ci = diff +-
  t_nu((1 + level) / 2) sqrt(v_a + v_b)``, as ``scipy.stats.ttest_ind(a, b, equal_var=False)``
  (which warns of cancellation where one side is constant). ``verdict`` is the interval's
  (``better``/``worse`` where it excludes 0). A side with fewer than 2 runs: no interval, no
  p-value, ``inconclusive``. Both sides constant (``t`` undefined): ``ci = [diff, diff]``,
  ``p_value`` 1 for equal values and 0 otherwise.
  """
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if len(a) < 2 or len(b) < 2:
    return {'diff': float(a.mean() - b.mean()), 'ci': None, 'p_value': None,
            'verdict': 'inconclusive'}
  if np.ptp(a) == 0 and np.ptp(b) == 0:
    diff = float(a[0] - b[0])
    return {'diff': diff, 'ci': [diff, diff], 'p_value': float(diff == 0),
            'verdict': verdict(diff, diff != 0)}
  diff = float(a.mean() - b.mean())
  va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
  se = np.sqrt(va + vb)
  nu = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
  half = float(stats.t.ppf(0.5 + level / 2, nu) * se)
  lo, hi = diff - half, diff + half
  return {'diff': diff, 'ci': [lo, hi], 'p_value': float(2 * stats.t.sf(abs(diff) / se, nu)),
          'verdict': verdict(diff, lo > 0 or hi < 0)}


def holm(p_values) -> list[float]:
  """Holm's step-down adjusted p-values, in the order given: with ``p_(1) <= ... <= p_(m)``
  sorted, ``adjusted_(i) = max_{j <= i} min(1, (m - j + 1) p_(j))``. Rejecting where the
  adjusted p-value is below alpha keeps the family-wise error rate at alpha (Holm, 1979)."""
  p = np.asarray(p_values, np.float64)
  order = np.argsort(p, kind='stable')
  adjusted = np.empty_like(p)
  adjusted[order] = np.maximum.accumulate(np.minimum(1, (len(p) - np.arange(len(p))) * p[order]))
  return adjusted.tolist()


def holm_family(comparisons: list[dict], alpha: float = ALPHA) -> list[dict]:
  """The comparisons (dicts with ``diff`` and ``p_value``) as one family: each gains ``p_holm``
  (:func:`holm` over the ``m`` comparisons that have a p-value; ``None`` for the others, which
  are not in the family) and ``verdict_holm`` (:func:`verdict` where ``p_holm < alpha``)."""
  adjusted = iter(holm([c['p_value'] for c in comparisons if c['p_value'] is not None]))
  out = []
  for c in comparisons:
    p = None if c['p_value'] is None else next(adjusted)
    out.append({**c, 'p_holm': p, 'verdict_holm': verdict(c['diff'], p is not None and p < alpha)})
  return out


def spearman(x, y) -> dict:
  """Spearman's rank correlation ``rho`` of ``y`` with ``x`` (Pearson's r of their ranks, ties
  at their mean rank) and its two-sided p-value (``scipy.stats.spearmanr``: ``t = rho
  sqrt((n - 2) / (1 - rho^2))`` on ``n - 2`` degrees of freedom); ``rho`` and ``p_value`` are
  ``None`` where ``n < 3`` or ``x`` or ``y`` is constant (``rho`` undefined)."""
  n = len(x)
  if n < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
    return {'spearman_rho': None, 'p_value': None, 'n': n}
  res = stats.spearmanr(x, y)
  return {'spearman_rho': float(res.statistic), 'p_value': float(res.pvalue), 'n': n}


def correlation(rows: list[dict], keys: list[str], column: str = 'F_t_star') -> dict | None:
  """Spearman's rho (:func:`spearman`) of test accuracy with ``column`` over the finished pruned
  runs (the dense reference, F = 0 by definition, is left out); ``None`` where no such run has
  the column.

  ``pooled``: over all of them. ``strata``: within each stratum, the runs sharing every axis
  key but ``skip.kind`` (so rho compares skip kinds and seeds of one density, method, ...),
  each with its axis values. ``median_stratum_rho``: the median of the strata's defined rhos,
  and ``strata_with_rho`` their number.
  """
  runs = [r for r in rows if r['status'] == 'finished' and r.get(column) is not None
          and r.get(METHOD_KEY) != 'dense']
  if not runs:
    return None
  def rho(members):
    return spearman([r[column] for r in members], [r['test_accuracy'] for r in members])
  strata_keys = [k for k in keys if k != SKIP_KEY]
  by_stratum: dict[tuple, list[dict]] = {}
  for r in runs:
    by_stratum.setdefault(tuple(r[k] for k in strata_keys), []).append(r)
  strata = [{**dict(zip(strata_keys, values)), **rho(members)}
            for values, members in by_stratum.items()]
  rhos = [s['spearman_rho'] for s in strata if s['spearman_rho'] is not None]
  return {'pooled': rho(runs), 'strata': strata,
          'median_stratum_rho': float(np.median(rhos)) if rhos else None,
          'strata_with_rho': len(rhos)}


def accuracy_auc(curve) -> float | None:
  """The mean test accuracy over training: the trapezoid area under accuracy ``a_i`` against
  epoch ``e_i`` through the evaluated points alone, over their span,
  ``sum_i (e_{i+1} - e_i) (a_i + a_{i+1}) / 2 / (e_n - e_1)``; one evaluation: its accuracy;
  none: ``None``."""
  if not curve:
    return None
  e, a = np.asarray(curve, np.float64).T
  if len(e) == 1:
    return float(a[0])
  return float(np.sum(np.diff(e) * (a[1:] + a[:-1]) / 2) / (e[-1] - e[0]))


def epochs_to(curve, target: float | None) -> float | None:
  """The first evaluated epoch ``e_i`` with test accuracy ``a_i >= target``; ``None`` where no
  evaluation reaches it or there is no target."""
  if target is None:
    return None
  return next((float(e) for e, a in curve if a >= target), None)


def convergence(rows: list[dict]) -> list[dict]:
  """The rows with ``accuracy_auc`` (:func:`accuracy_auc`) and ``epochs_to_90pct_dense``
  (:func:`epochs_to` of ``0.9 * mean test accuracy`` of the study's finished dense runs,
  ``pruning.method='dense'``; ``None`` without them) from each row's ``curve``."""
  dense = [r['test_accuracy'] for r in rows
           if r['status'] == 'finished' and r.get(METHOD_KEY) == 'dense']
  target = DENSE_FRACTION * float(np.mean(dense)) if dense else None
  return [{**r, 'accuracy_auc': accuracy_auc(r['curve']),
           'epochs_to_90pct_dense': epochs_to(r['curve'], target)} for r in rows]
