"""The web's forms (Flask-WTF: each carries its CSRF token). Every message is translated."""
from __future__ import annotations

from flask_babel import gettext
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm as _FlaskForm
from wtforms import (BooleanField, DateField, DateTimeLocalField, HiddenField, IntegerField, MultipleFileField,
                     PasswordField, RadioField, SelectField, SelectMultipleField, StringField, TextAreaField)
from wtforms import widgets
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional, ValidationError

REQUIRED = _l("This field is required.")
# WTForms' own messages (it has no Khmer catalogue): listed here so that `make messages` puts them in ours.
WTFORMS_MESSAGES = (_l("Not a valid choice."), _l("Invalid Choice: could not coerce."),
                    _l("Not a valid integer value."), _l("Not a valid date value."),
                    _l("Not a valid datetime value."), _l("'%(value)s' is not a valid choice for this field."),
                    _l("'%(value)s' are not valid choices for this field."))


class _HubTranslations:
    """WTForms' messages through the hub's catalogues, in the page's language."""

    def gettext(self, string):
        return gettext(string)

    def ngettext(self, singular, plural, n):
        # Khmer has one plural form; the catalogue holds both English forms as plain messages.
        return gettext(singular if n == 1 else plural)


class FlaskForm(_FlaskForm):
    class Meta(_FlaskForm.Meta):
        def get_translations(self, form):
            return _HubTranslations()
LONG = _l("This is too long.")


class MultiCheckboxField(SelectMultipleField):
    widget = widgets.ListWidget(prefix_label=False)
    option_widget = widgets.CheckboxInput()


class LoginForm(FlaskForm):
    username = StringField(_l("Username"), [DataRequired(REQUIRED), Length(max=64, message=LONG)])
    password = PasswordField(_l("Password"), [DataRequired(REQUIRED), Length(max=1024, message=LONG)])


class CodeForm(FlaskForm):
    code = StringField(_l("Code"), [DataRequired(REQUIRED), Length(max=64, message=LONG)])


class PasswordSetForm(FlaskForm):
    password = PasswordField(_l("New password"), [DataRequired(REQUIRED), Length(max=1024, message=LONG)])
    confirm = PasswordField(_l("The same password again"), [DataRequired(REQUIRED), Length(max=1024, message=LONG)])

    def validate_confirm(self, field):
        if field.data != self.password.data:
            raise ValidationError(_l("The two passwords differ; type the same password twice."))


class ChangePasswordForm(PasswordSetForm):
    current = PasswordField(_l("Current password"), [DataRequired(REQUIRED), Length(max=1024, message=LONG)])


class LanguageForm(FlaskForm):
    lang = RadioField(_l("Language"), choices=[("km", "ខ្មែរ"), ("en", "English")],
                      validators=[InputRequired(REQUIRED)])


class BedsForm(FlaskForm):
    beds = IntegerField(_l("Free beds now"), [InputRequired(_l("Give a whole number of beds.")),
                                              NumberRange(min=0, max=10000, message=_l("Give a whole number of beds."))])


class ReasonForm(FlaskForm):
    reason = TextAreaField(_l("Reason"), [DataRequired(_l("Give a reason.")), Length(max=500, message=LONG)])


class CloseForm(FlaskForm):
    outcome = SelectField(_l("Outcome"), validators=[InputRequired(REQUIRED)])
    note = TextAreaField(_l("Note (optional)"), [Optional(), Length(max=500, message=LONG)])


class ActionForm(FlaskForm):
    """An action without fields (acknowledge, accept, start care): only the CSRF token."""


class InviteForm(FlaskForm):
    name = StringField(_l("Name"), [DataRequired(REQUIRED), Length(max=200, message=LONG)])
    username = StringField(_l("Username (optional)"), [Optional(), Length(max=64, message=LONG)])
    role = SelectField(_l("Role"), validators=[InputRequired(REQUIRED)])
    lang = SelectField(_l("Language"), choices=[("km", "ខ្មែរ"), ("en", "English")], validators=[InputRequired(REQUIRED)])
    phone = StringField(_l("Phone (optional)"), [Optional(), Length(max=40, message=LONG)])


class ContactForm(FlaskForm):
    name = StringField(_l("Name"), [DataRequired(REQUIRED), Length(max=200, message=LONG)])
    phone = StringField(_l("Phone"), [DataRequired(REQUIRED), Length(max=40, message=LONG)])
    lang = SelectField(_l("Language of texts"), choices=[("km", "ខ្មែរ"), ("en", "English")],
                       validators=[InputRequired(REQUIRED)])
    role = SelectField(_l("Role"), validators=[InputRequired(REQUIRED)])
    duty = BooleanField(_l("On duty (texted first)"))


class RecoverForm(PasswordSetForm):
    user_id = SelectField(_l("Member"), coerce=int, validators=[InputRequired(REQUIRED)])
    code = StringField(_l("Recovery code"), [DataRequired(REQUIRED), Length(max=100, message=LONG)])


SEXES = [("female", _l("female")), ("male", _l("male")), ("other", _l("other")), ("unknown", _l("not known"))]
NATIONALITIES = [("KH", _l("Cambodian")), ("VN", _l("Vietnamese")), ("TH", _l("Thai")), ("LA", _l("Lao")),
                 ("MM", _l("Myanmar")), ("CN", _l("Chinese")), ("ID", _l("Indonesian")), ("other", _l("other")),
                 ("unknown", _l("not known"))]
EXPLOITATION = [("forced_labour", _l("forced labour")), ("sexual", _l("sexual exploitation")),
                ("scam_compound", _l("forced criminality (scam compound)")), ("forced_marriage", _l("forced marriage")),
                ("domestic_servitude", _l("domestic servitude")), ("begging", _l("forced begging")),
                ("fishing", _l("fishing vessel")), ("other", _l("other")), ("unknown", _l("not known yet"))]
ID_DOCS = [("", _l("none")), ("national_id", _l("national ID card")), ("passport", _l("passport")),
           ("birth_certificate", _l("birth certificate")), ("other", _l("other document"))]

RISKS = [("high", _l("high")), ("medium", _l("medium")), ("low", _l("low"))]
STATUSES = [("possible", _l("possible victim")), ("actual", _l("identified victim"))]


class ReferralForm(FlaskForm):
    """The body of PROTOCOL.md section 2, for an officer in the field. Only what placing the person needs
    is required: a name (either script), sex, needs, where found, the recipient and consent."""

    previous_id = HiddenField()
    to = RadioField(_l("Send to"), validators=[InputRequired(_l("Choose the agency to send the referral to."))],
                    validate_choice=True)
    urgency = RadioField(_l("Urgency"), choices=[("normal", _l("normal")), ("urgent", _l("urgent"))],
                         default="normal", validators=[InputRequired(REQUIRED)])
    child = BooleanField(_l("The person is a child (under 18)"))
    name_latin = StringField(_l("Name (Latin letters)"), [Optional(), Length(max=200, message=LONG)])
    name_khmer = StringField(_l("Name (Khmer script)"), [Optional(), Length(max=200, message=LONG)])
    sex = SelectField(_l("Sex"), choices=SEXES, validators=[InputRequired(REQUIRED)])
    date_of_birth = DateField(_l("Date of birth"), [Optional()], format="%Y-%m-%d")
    age_estimate = IntegerField(_l("Or age estimate (years)"),
                                [Optional(), NumberRange(min=0, max=120, message=_l("Give an age from 0 to 120."))])
    nationality = SelectField(_l("Nationality"), choices=NATIONALITIES, default="KH")
    languages = StringField(_l("Languages spoken"), [Optional(), Length(max=200, message=LONG)])
    id_type = SelectField(_l("Identity document"), choices=ID_DOCS, validators=[Optional()])
    id_number = StringField(_l("Document number"), [Optional(), Length(max=100, message=LONG)])
    exploitation = SelectField(_l("Exploitation"), choices=EXPLOITATION, default="unknown")
    province = SelectField(_l("Province where found"), validators=[InputRequired(REQUIRED)])
    district = SelectField(_l("District"), validators=[Optional()], validate_choice=False)
    commune = SelectField(_l("Commune"), validators=[Optional()], validate_choice=False)
    place = StringField(_l("Place (village, building)"), [Optional(), Length(max=300, message=LONG)])
    rescued_at = DateTimeLocalField(_l("Rescued at"), [Optional()], format=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"])
    trafficking_status = RadioField(_l("Trafficking status"),
                                    choices=STATUSES,
                                    default="possible", validators=[InputRequired(REQUIRED)])
    needs = MultiCheckboxField(_l("Needs"), validators=[DataRequired(_l("Tick at least one need."))])
    risk_level = RadioField(_l("Risk"), choices=RISKS,
                            default="medium", validators=[InputRequired(REQUIRED)])
    risk_notes = TextAreaField(_l("Risk notes"), [Optional(), Length(max=2000, message=LONG)])
    situation_notes = TextAreaField(_l("What happened (short)"), [Optional(), Length(max=4000, message=LONG)])
    consent_to_share = BooleanField(_l("The person agrees that this referral is shared with the receiving agency"))
    consent_for_services = BooleanField(_l("The person agrees to receive services"))
    legal_ground = StringField(_l("Or, for a child: the legal ground for referring without consent"),
                               [Optional(), Length(max=300, message=LONG)])
    consent_recorded_by = StringField(_l("Consent recorded by"), [DataRequired(REQUIRED), Length(max=200, message=LONG)])
    photos = MultipleFileField(_l("Photos and documents (camera)"))
    keep_attachments = BooleanField(_l("Keep the photos of the earlier referral"), default=True)

    def validate_name_khmer(self, field):
        if not (self.name_latin.data or "").strip() and not (field.data or "").strip():
            raise ValidationError(_l("Give the person's name in Latin letters or in Khmer script."))

    def validate_consent_to_share(self, field):
        if field.data:
            return
        if self.child.data and (self.legal_ground.data or "").strip():
            return
        raise ValidationError(_l("Consent is required: tick it, or for a child give the legal ground."))
