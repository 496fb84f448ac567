"""What a refused action says to a person, in their language, by the error's code.

Services raise errors with English messages for the API and the log; the pages show these instead.
"""
from __future__ import annotations

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from hub.errors import HubError

BY_CODE = {
    "login_failed": _l("The username or password is not right. Check them and try again."),
    "login_throttled": _l("Too many wrong sign-ins from here or for this account: wait a few minutes, then try "
                          "again. On a phone or computer you signed in on before, you can sign in at once."),
    "wrong_code": _l("This code is not right, or was used already. Enter the code your authenticator app shows "
                     "now, or a recovery code."),
    "second_step_required": _l("Your sign-in is not finished: enter the code from your authenticator app."),
    "totp_state": _l("Two-step sign-in changed meanwhile; open the page again."),
    "no_second_step": _l("This sign-in is not waiting for a code."),
    "session_expired": _l("Your session has ended; sign in again."),
    "invalid_invitation": _l("This invitation link is not valid; ask your agency admin for a new one."),
    "invitation_used": _l("This invitation was already used; sign in, or ask your agency admin for a new one."),
    "invitation_expired": _l("This invitation has expired; ask your agency admin for a new one."),
    "weak_password": _l("The password must have at least 10 characters; a few words make a good one."),
    "wrong_password": _l("The current password is not right."),
    "wrong_state": _l("This referral has changed meanwhile, so that action is no longer possible. "
                      "The page shows what can be done now."),
    "reason_required": _l("Give a reason."),
    "invalid_capacity": _l("That number of free beds is more than the agency has."),
    "username_taken": _l("That username is taken; choose another."),
    "invalid_phone": _l("That phone number cannot be used; write it like +855 12 345 678."),
    "wrong_recovery_code": _l("This recovery code does not open your agency's key ring; use the code printed at "
                              "enrolment."),
    "not_enrolled": _l("Your agency has no recovery copy; it must be enrolled first."),
    "self_deactivation": _l("You cannot deactivate yourself; ask another agency admin."),
    "duty_contact": _l("This is the duty contact; give the duty to another contact first."),
    "no_keyring": _l("Your session holds no key ring of your agency, so referrals cannot be sealed or opened. "
                     "Sign out and in again, or ask your agency admin for a new invitation."),
    "packet_too_large": _l("The referral with its photos is larger than the hub accepts; attach fewer photos."),
    "unknown_agency": _l("That agency is not in the directory."),
    "invalid_recipient": _l("That agency cannot receive referrals; choose a service agency."),
    "forbidden": _l("Your role may not do this."),
    "not_found": _l("There is no such referral, or it is not your agency's."),
    "unknown_user": _l("There is no such member in your agency."),
    "unknown_contact": _l("There is no such contact in your agency."),
    "user_inactive": _l("This member is deactivated."),
}


def say(exc: HubError) -> str:
    """The person-facing message for a refused action."""
    text = BY_CODE.get(exc.code)
    if text is not None:
        return str(text)
    return _("The hub refused this: %(message)s", message=exc.message)
