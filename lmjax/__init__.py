"""lmjax."""
