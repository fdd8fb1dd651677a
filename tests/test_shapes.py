"""The generated captioned shapes: deterministic per (seed, split, index), well-formed, captions that
name the class, balanced labels, and clear errors."""
import numpy as np
import pytest

from benchmark.data.shapes import CLASSES, CaptionedShapes, LabelledImage


def test_items_regenerate_identically_and_depend_on_the_seed():
    a, b = CaptionedShapes("test")[5], CaptionedShapes("test")[5]
    assert np.array_equal(a.rgb, b.rgb) and a.caption == b.caption and a.label == b.label
    other = CaptionedShapes("test", seed=1)[5]
    assert not np.array_equal(a.rgb, other.rgb)
    assert not np.array_equal(CaptionedShapes("train")[5].rgb, a.rgb)
    assert CaptionedShapes("test", n=4).manifest_sha256() == CaptionedShapes("test", n=4).manifest_sha256()
    assert CaptionedShapes("test", n=4).manifest_sha256() != CaptionedShapes("test", n=4, seed=1).manifest_sha256()


def test_sizes_dtypes_and_captions():
    ds = CaptionedShapes("test")
    assert len(ds) == 256 and len(CaptionedShapes("train")) >= 5000 and ds.name == "shapes"
    assert ds.classnames == list(CLASSES)
    for i in range(0, len(ds), 7):
        item = ds[i]
        assert isinstance(item, LabelledImage)
        assert item.rgb.shape == (32, 32, 3) and item.rgb.dtype == np.uint8
        assert 0 <= item.label < len(CLASSES)
        assert CLASSES[item.label] in item.caption.split(" ") or f"{CLASSES[item.label]}." in item.caption
        assert item.rgb.std() > 5  # textured, not a flat background
    assert CaptionedShapes("test", size=48)[0].rgb.shape == (48, 48, 3)


def test_labels_cover_every_class_and_captions_vary():
    ds = CaptionedShapes("test")
    items = [ds[i] for i in range(len(ds))]
    assert set(it.label for it in items) == set(range(len(CLASSES)))
    assert len(set(it.caption for it in items)) > len(ds) // 2


def test_bad_split_and_index_are_errors():
    with pytest.raises(ValueError, match="test.*train"):
        CaptionedShapes("validation")
    with pytest.raises(IndexError):
        CaptionedShapes("test", n=3)[3]
