"""Run directories: their files, and plots of them."""
