"""HTML forms (flask-wtf, CSRF on). Every text field is cleaned by the one rule of
credit_app/platform/input_text.py before it is validated (passwords are left exactly as typed)."""

from __future__ import annotations

from typing import Any

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    EmailField,
    IntegerField,
    PasswordField,
    SelectField,
    StringField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.fields.core import UnboundField
from wtforms.validators import DataRequired, EqualTo, InputRequired, Length, NumberRange

from credit_app.platform.input_text import clean_line
from credit_app.services.limits import (
    MAX_EMAIL_LENGTH,
    MAX_GRANT,
    MAX_PASSWORD_LENGTH,
    MAX_REASON_LENGTH,
    MAX_RECOVERY_CODE_LENGTH,
    MAX_TOKEN_NAME_LENGTH,
    TOTP_DIGITS,
)

# The limits of credit_app/services/limits.py, as the validators the fields share.
EMAIL_LENGTH = Length(max=MAX_EMAIL_LENGTH)
PASSWORD_LENGTH = Length(max=MAX_PASSWORD_LENGTH)
REASON_LENGTH = Length(min=1, max=MAX_REASON_LENGTH)


def _clean_line(value: Any) -> Any:
    return clean_line(value) if isinstance(value, str) else value


class Form(FlaskForm):
    """A form whose text fields (not passwords) are cleaned before validation."""

    class Meta:
        def bind_field(self, form: Any, unbound_field: UnboundField, options: dict) -> Any:
            if issubclass(unbound_field.field_class, StringField) and not issubclass(
                unbound_field.field_class, PasswordField
            ):
                filters = (_clean_line, *unbound_field.kwargs.get("filters", ()))
                return unbound_field.bind(form=form, **options, filters=filters)
            return unbound_field.bind(form=form, **options)


class SignupForm(Form):
    email = EmailField("Email", validators=[DataRequired(), EMAIL_LENGTH])
    password = PasswordField("Password", validators=[DataRequired(), PASSWORD_LENGTH])
    confirm = PasswordField(
        "Repeat password",
        validators=[DataRequired(), EqualTo("password", "The passwords do not match.")],
    )


class LoginForm(Form):
    email = EmailField("Email", validators=[DataRequired(), EMAIL_LENGTH])
    password = PasswordField("Password", validators=[DataRequired(), PASSWORD_LENGTH])
    remember = BooleanField("Keep me signed in")


class ApiTokenForm(Form):
    name = StringField(
        "Token name", validators=[DataRequired(), Length(min=1, max=MAX_TOKEN_NAME_LENGTH)]
    )


class AdjustCreditsForm(Form):
    operation = SelectField(
        "Action",
        choices=[SelectChoice("grant", "Grant credits"), SelectChoice("remove", "Remove credits")],
        default="grant",
    )
    amount = IntegerField("Credits", validators=[DataRequired(), NumberRange(min=1, max=MAX_GRANT)])
    reason = StringField("Reason", validators=[DataRequired(), REASON_LENGTH])


class SignInAccessForm(Form):
    reason = StringField("Reason", validators=[DataRequired(), REASON_LENGTH])


class ForgotPasswordForm(Form):
    email = EmailField("Email", validators=[DataRequired(), EMAIL_LENGTH])


class ResetPasswordForm(Form):
    password = PasswordField("New password", validators=[DataRequired(), PASSWORD_LENGTH])
    confirm = PasswordField(
        "Repeat the new password",
        validators=[DataRequired(), EqualTo("password", "The passwords do not match.")],
    )


class ChangePasswordForm(Form):
    current_password = PasswordField(
        "Current password", validators=[DataRequired(), PASSWORD_LENGTH]
    )
    password = PasswordField("New password", validators=[DataRequired(), PASSWORD_LENGTH])
    confirm = PasswordField(
        "Repeat the new password",
        validators=[DataRequired(), EqualTo("password", "The passwords do not match.")],
    )


class ChangeEmailForm(Form):
    new_email = EmailField("New email address", validators=[DataRequired(), EMAIL_LENGTH])
    password = PasswordField("Your password", validators=[DataRequired(), PASSWORD_LENGTH])


class NotificationsForm(Form):
    one_credit_left = BooleanField("When I have one credit left")
    credits_used_up = BooleanField("When I have used all my credits")
    payment_failed = BooleanField("When a payment for Pro fails")


class SignOutEverywhereForm(Form):
    """Only the CSRF token: the button is the confirmation."""


class TwoFactorForm(Form):
    code = StringField(
        "Code", validators=[DataRequired(), Length(min=TOTP_DIGITS, max=MAX_RECOVERY_CODE_LENGTH)]
    )


class RolloutForm(Form):
    percentage = IntegerField(
        "Enforced for (% of free users)", validators=[InputRequired(), NumberRange(min=0, max=100)]
    )
    reason = StringField("Reason", validators=[DataRequired(), REASON_LENGTH])


class DeleteAccountForm(Form):
    password = PasswordField("Your password", validators=[DataRequired(), PASSWORD_LENGTH])
    confirm = BooleanField(
        "I understand that my account, my designs and my uploads are deleted for good",
        validators=[DataRequired("Tick the box to confirm.")],
    )
