#!/usr/bin/env python
"""Build every registered vimamba model, run one forward and print a table. See vimamba/benchmark.py."""
from vimamba.benchmark import main

if __name__ == '__main__':
    main()
