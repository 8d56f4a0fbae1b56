"""Running trials in processes and on machines sharing one Optuna study."""
