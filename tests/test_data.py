import numpy as np
import pytest
from PIL import Image

from edgediff.errors import InputError
from edgediff.training import data


def test_mnist5k_is_offline_padded_and_scaled():
    d = data.load("mnist5k")
    assert d.images.shape == (5000, 1, 32, 32) and d.images.dtype == np.float32
    assert d.images.min() == -1.0 and d.images.max() == 1.0
    assert np.bincount(d.labels).tolist() == [500] * 10
    assert (d.images[:, :, :2, :] == -1).all()  # 28x28 digits padded by 2 px


def test_split_is_random_disjoint_and_deterministic():
    d = data.load("mnist5k")
    a_train, a_test = data.split(d, test_fraction=0.2, seed=3)
    b_train, b_test = data.split(d, test_fraction=0.2, seed=3)
    assert np.array_equal(a_test.images, b_test.images) and len(a_test) == 1000 and len(a_train) == 4000
    assert len(np.unique(a_test.labels)) == 10  # random, not the class-ordered head
    _, c_test = data.split(d, test_fraction=0.2, seed=4)
    assert not np.array_equal(a_test.labels, c_test.labels)


def test_image_folder_with_class_subfolders(tmp_path):
    for k, name in enumerate(["cat", "dog"]):
        (tmp_path / name).mkdir()
        for i in range(3):
            Image.fromarray(np.full((40, 40, 3), 60 * k + i, np.uint8)).save(tmp_path / name / f"{i}.png")
    (tmp_path / "cat" / "notes.txt").write_text("ignored")
    d = data.load(str(tmp_path), resolution=16, channels=3)
    assert d.images.shape == (6, 3, 16, 16) and d.classes == ("cat", "dog")
    assert d.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert -1.0 <= d.images.min() and d.images.max() <= 1.0


def test_unknown_dataset_and_empty_folder(tmp_path):
    with pytest.raises(InputError, match="unknown dataset"):
        data.load("imagenet")
    with pytest.raises(InputError, match="no images"):
        data.load(str(tmp_path))
