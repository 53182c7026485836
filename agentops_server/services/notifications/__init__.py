"""Notifications: telling members and other systems about changes.

- :mod:`.announcements`: :class:`~.announcements.Notifier` turns a change into notifications,
  emails and webhook deliveries, and runs the derived-work tasks (``governance.control_changed``
  and the webhook delivery task);
- :mod:`.inbox`: a member's in-app notifications (list, unread count, mark read);
- :mod:`.webhooks`: the org's webhooks and their deliveries;
- :mod:`.delivery`: one signed, retried POST per delivery;
- :mod:`.addresses`: where a webhook may point (SSRF);
- :mod:`.signing`: the ``AgentOps-Signature`` header.

See docs/notifications.md.
"""
