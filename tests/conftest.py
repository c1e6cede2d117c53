import pytest
import torch

# Fixtures that start the app's Gradio server: a test that uses one is a `server` test.
SERVER_FIXTURES = {"server", "client", "app_url"}


def pytest_collection_modifyitems(items):
    for item in items:
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.server)


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """Tiny tensors run faster on one thread, and the CI machine has two shared cores."""
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory):
    """A checkpoints folder of tiny random models: clip, text_base, class_base, sr64, sr128."""
    from tests.tiny import write_tiny_checkpoints
    root = tmp_path_factory.mktemp("checkpoints")
    write_tiny_checkpoints(root)
    return root
