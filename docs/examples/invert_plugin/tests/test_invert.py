import numpy as np


def test_negative_twice_is_identity(plugin_host, sample_photo, action_context):
    once = plugin_host.run("invert.negative", sample_photo, context=action_context)
    twice = plugin_host.run("invert.negative", once)
    assert np.abs(twice - sample_photo).max() < 1e-6
    assert action_context.fractions == [1.0]


def test_half_amount_is_mid_grey(plugin_host, sample_photo):
    result = plugin_host.run("invert.negative", sample_photo, params={"amount": 0.5})
    np.testing.assert_allclose(result, 0.5, atol=1e-6)
