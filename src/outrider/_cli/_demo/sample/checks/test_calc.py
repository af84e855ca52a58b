"""Tests of the sample project, run by the demo with unittest."""

import time
import unittest

import pytest
from calc import add, mean


class CalcTest(unittest.TestCase):
    def test_add(self) -> None:
        assert add(2, 3) == 5

    def test_mean(self) -> None:
        time.sleep(0.3)  # a test suite takes a moment
        assert mean([1, 2, 3]) == 2

    def test_mean_of_nothing(self) -> None:
        with pytest.raises(ValueError):
            mean([])


if __name__ == "__main__":
    unittest.main()
