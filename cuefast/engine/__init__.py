"""The roles that run without a request: scheduler, lease reaper, dispatcher, notice sender."""
