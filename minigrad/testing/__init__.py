"""A kit for testing ops and cells: `gradcheck`, `gradgradcheck`, and (with hypothesis)
`.strategies`."""
from minigrad.testing.gradcheck import GradcheckError, gradcheck, gradgradcheck

__all__ = ["GradcheckError", "gradcheck", "gradgradcheck"]
