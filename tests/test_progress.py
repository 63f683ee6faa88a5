"""Progress lines of long jobs: throttled, with totals, and epochs in words with accuracy in %."""

from robrepro.progress import Ticker, epoch_summary


def test_a_ticker_writes_the_first_and_last_unit_and_is_throttled_between(capsys):
    t = Ticker("attack", 5, "batches", every=3600.0)
    for _ in range(5):
        t.update()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and lines[0].startswith("[attack] 1/5 batches") and lines[1].startswith("[attack] 5/5 batches")


def test_a_ticker_without_throttle_reports_every_unit_and_an_upper_bound_says_so(capsys):
    t = Ticker("min-norm", 3, "batches", every=0.0, bound=True)
    for _ in range(2):
        t.update(note="median distance 0.5")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and "2/<=3 batches" in lines[1] and lines[1].endswith("; median distance 0.5")
    Ticker("x", 1, enabled=False).update()
    assert capsys.readouterr().err == ""


def test_an_epoch_is_summarised_with_accuracy_in_percent():
    assert epoch_summary({"epoch": 3, "loss": 0.123456, "acc": 0.9512, "test_acc": 0.5}) == "loss 0.1235, acc 95.12%, test_acc 50.00%"
