"""The sleep plan: steps sized to the repository, and what an interrupted sleep tells the user."""

from learnagent.learning.sleep import PLAN_EPOCHS, PLAN_MAX_STEPS, PLAN_MIN_STEPS, nights_message, plan_steps


def test_plan_fits_the_number_of_pairs():
    assert plan_steps(15) == max(15 * PLAN_EPOCHS, PLAN_MIN_STEPS)  # 15 pairs: 15 steps, not a fixed 100
    assert plan_steps(15, grad_accum=2) == -(-15 * PLAN_EPOCHS // 2)
    assert plan_steps(1) == PLAN_MIN_STEPS
    assert plan_steps(10_000) == PLAN_MAX_STEPS


def test_interrupted_sleep_says_how_many_nights_at_this_rate():
    train = {"steps": 29, "target_steps": 100, "seconds": 600.0}  # 10 min for 29 steps: 20.7 s/step
    msg = nights_message("v0001", train, 10)
    # 71 steps left x 20.7 s = 24.5 min: three more nights of 10 minutes
    assert msg.startswith("stopped v0001 at step 29 of 100 (10.0 min so far, 20.7 s/step)")
    assert "about 24 min: 3 more nights of --max-minutes 10;" in msg and msg.endswith("to resume it")
    assert ": 1 more night of --max-minutes 30;" in nights_message("v0001", train, 30)
    assert "night" not in nights_message("v0001", train, None)  # stopped by something else (Ctrl-C)
    assert nights_message("v0002", {"steps": 0}, 5).startswith("stopped before v0002 finished training")
