"""The exceptions derive raises. Every one names the user's operand, shape or symbol.

All derive errors share the base class :class:`DeriveError`, so a caller (or the command line) can
catch one type and print its message as a single line.
"""


class DeriveError(Exception):
    """Base class of every error derive raises on purpose."""


class ShapeError(DeriveError, ValueError):
    """Operands whose shapes do not fit together (names both operands and both shapes)."""


class NonScalarLoss(DeriveError, ValueError):
    """The expression to differentiate is not a scalar (nor a 1 x 1 matrix)."""


class InvalidParameter(DeriveError, TypeError):
    """A ``wrt`` entry that is not a MatrixSymbol."""


class ParameterNotInLoss(DeriveError, ValueError):
    """A ``wrt`` parameter that the loss does not depend on."""


class UnsupportedOperation(DeriveError, NotImplementedError):
    """An operation with no differentiation rule (names it and lists what is supported)."""


class GradientMismatch(DeriveError, AssertionError):
    """The closed form and the elementwise truth disagree (names parameter, entry, both values)."""


class ExpansionTooLarge(DeriveError, ValueError):
    """Concrete dims whose explicit expansion would be too big to compute (says how big)."""


class DimsError(DeriveError, ValueError):
    """Concrete dims that are missing, not positive integers, or do not match the expression."""


class ParseError(DeriveError, ValueError):
    """A hand formula (text) that does not parse; the message shows the position."""


class NetworkFileError(DeriveError, ValueError):
    """A network file for the command that does not define what it must."""


class CodegenError(DeriveError, RuntimeError):
    """Generated code that fails its own check (names the network, parameter, entry and both values)."""
