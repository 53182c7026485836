"""The notification routes: a member's notifications, the org's webhooks."""
