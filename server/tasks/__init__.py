"""Tasks, schedules and webhooks on top of conversations (issue 11): start tasks,
background tasks, the single-task API, cron schedules and signed webhooks. No engine of
their own: each task is a conversation, run by the run owner through the one queue,
followed through its hooks; each change is an event in a log."""

from server.tasks.automation import Automation

__all__ = ["Automation"]
