"""Parameter validation: scikit-learn's ``_parameter_constraints``, the project's wording.

Both estimators declare every parameter once, in ``_parameter_constraints``,
with scikit-learn's constraint objects (``Interval``, ``"boolean"``, types...)
and the few custom ones below. :func:`validate_params` checks them before any
expensive work and raises scikit-learn's ``InvalidParameterError`` (a
``ValueError`` *and* a ``TypeError``, so either ``except`` catches it) worded
the way the rest of the package words errors::

    `lr` must be a number > 0; got -1.

A :class:`Checked` constraint runs one of the package's detailed checks (pixel
depth, timm transform settings...), whose own message, naming the fix, is kept.
"""

from __future__ import annotations

from collections.abc import Callable
from numbers import Integral, Real

from sklearn.utils._param_validation import (
    Interval,
    InvalidParameterError,
    Options,
    _Constraint,
    make_constraint,
)

__all__ = ["Checked", "InvalidParameterError", "OneOf", "describe", "validate_params"]


class OneOf(Options):
    """Exact options, listed in the given order (``StrOptions`` sorts them away)."""

    def __init__(self, *options):
        super().__init__(object, set(options))
        self.ordered = tuple(options)

    def is_satisfied_by(self, val):
        return any(val is option or (type(val) is type(option) and val == option) for option in self.ordered)

    def __str__(self):
        return f"one of {self.ordered!r}"


class Checked(_Constraint):
    """A value accepted by ``check`` (a function raising ValueError/TypeError with the fix).

    Parameters
    ----------
    check : callable
        ``check(value)``; raises when the value is bad.
    description : str
        What a good value is, for the combined message.
    """

    def __init__(self, check: Callable, description: str):
        super().__init__()
        self.check = check
        self.description = description

    def is_satisfied_by(self, val):
        try:
            self.check(val)
        except (ValueError, TypeError):
            return False
        return True

    def explain(self, val) -> str | None:
        """The check's own message for ``val``."""
        try:
            self.check(val)
        except (ValueError, TypeError) as exc:
            return str(exc)
        return None

    def __str__(self):
        return self.description


def _interval(c: Interval) -> str:
    kind = "an int" if c.type is Integral else "a number"
    if c.right is None:
        return f"{kind} {'>=' if c.closed in ('left', 'both') else '>'} {c.left}"
    if c.left is None:
        return f"{kind} {'<=' if c.closed in ('right', 'both') else '<'} {c.right}"
    left = "[" if c.closed in ("left", "both") else "("
    right = "]" if c.closed in ("right", "both") else ")"
    return f"{kind} in {left}{c.left}, {c.right}{right}"


def _constraint(constraint) -> _Constraint:
    # make_constraint knows scikit-learn's own constraint classes only.
    return constraint if isinstance(constraint, _Constraint) else make_constraint(constraint)


def describe(constraint) -> str:
    """One constraint in words ("an int >= 1", "None", "a dict"...)."""
    constraint = _constraint(constraint)
    if isinstance(constraint, Interval):
        return _interval(constraint)
    name = type(constraint).__name__
    if name == "_NoneConstraint":
        return "None"
    if name == "_Booleans":
        return "True or False"
    if name == "_Callables":
        return "a callable"
    if name == "_InstancesOf":
        t = constraint.type
        return {dict: "a dict", str: "a string", list: "a list", tuple: "a tuple", Integral: "an int",
                Real: "a number"}.get(
            t, f"an instance of {t.__module__}.{t.__qualname__}" if t.__module__ != "builtins" else f"a {t.__name__}")
    return str(constraint)


def _join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def validate_params(estimator) -> None:
    """Check ``estimator``'s parameters against its ``_parameter_constraints``.

    Raises
    ------
    InvalidParameterError
        ``"`name` must be <what>; got <value>."``, or the detailed message of
        a :class:`Checked` constraint.
    """
    params = estimator.get_params(deep=False)
    for name, constraints in type(estimator)._parameter_constraints.items():
        if constraints == "no_validation":
            continue
        value = params[name]
        constraints = [_constraint(c) for c in constraints]
        if any(c.is_satisfied_by(value) for c in constraints):
            continue
        checked = [c for c in constraints if isinstance(c, Checked)]
        others = [c for c in constraints if not isinstance(c, Checked) and str(c) != "None"]
        if len(checked) == 1 and not others:
            # The check's own message is more precise than a list of alternatives.
            raise InvalidParameterError(checked[0].explain(value))
        shown = value if isinstance(value, (str, Real, type(None))) or len(repr(value)) < 80 \
            else type(value).__name__
        raise InvalidParameterError(
            f"`{name}` must be {_join([describe(c) for c in constraints])}; got {shown!r}."
        )
