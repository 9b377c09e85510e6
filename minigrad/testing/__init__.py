"""A kit for testing ops and cells: `gradcheck`, and (with hypothesis) `.strategies`."""
from minigrad.testing.gradcheck import GradcheckError, gradcheck

__all__ = ["GradcheckError", "gradcheck"]
