"""`python -m mini_t2i.bench`: the whole suite (the same as `mini-t2i bench`)."""

from mini_t2i.bench.suite import main

main()
