"""``--info``'s batch rows line names the server's strict mode only where it is asked for."""

from mlx_entropix.cli.terminal import batch_rows_note


def test_batch_rows_note_claims_strict_mode_only_where_it_works():
    assert batch_rows_note(True, True) == "bitwise as alone (measured)"
    assert "the server asks MKL for strict mode" in batch_rows_note(False, True)
    # An AMD EPYC or OpenBLAS: the server leaves MKL's mode alone, so --info must not say it asks.
    note = batch_rows_note(False, False)
    assert "strict mode" not in note and "up to the last bits" in note
