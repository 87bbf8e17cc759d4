import pytest


@pytest.fixture(scope="session")
def pool():
    """The shipped models, loaded once for every demo test."""
    from mini_t2i.demo.handlers import ModelPool

    return ModelPool()


@pytest.fixture(scope="session")
def handlers(pool, tmp_path_factory):
    from mini_t2i.demo.handlers import DemoHandlers

    return DemoHandlers(pool, out_dir=tmp_path_factory.mktemp("demo_out"))
