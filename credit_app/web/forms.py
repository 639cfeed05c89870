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


def _clean_line(value: Any) -> Any:
    return clean_line(value) if isinstance(value, str) else value


class Form(FlaskForm):
    """A form whose text fields (not passwords) are cleaned before validation."""

    class Meta:
        def bind_field(self, form: Any, unbound_field: UnboundField, options: dict) -> Any:
            if issubclass(unbound_field.field_class, StringField) and not issubclass(
                    unbound_field.field_class, PasswordField):
                filters = (_clean_line, *unbound_field.kwargs.get("filters", ()))
                return unbound_field.bind(form=form, **options, filters=filters)
            return unbound_field.bind(form=form, **options)


class SignupForm(Form):
    email = EmailField("Email", validators=[DataRequired(), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=256)])
    confirm = PasswordField("Repeat password",
                            validators=[DataRequired(), EqualTo("password",
                                                                "The passwords do not match.")])


class LoginForm(Form):
    email = EmailField("Email", validators=[DataRequired(), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=256)])
    remember = BooleanField("Keep me signed in")


class ApiTokenForm(Form):
    name = StringField("Token name", validators=[DataRequired(), Length(min=1, max=80)])


class AdjustCreditsForm(Form):
    operation = SelectField("Action", choices=[SelectChoice("grant", "Grant credits"),
                                               SelectChoice("remove", "Remove credits")],
                            default="grant")
    amount = IntegerField("Credits", validators=[DataRequired(), NumberRange(min=1, max=100_000)])
    reason = StringField("Reason", validators=[DataRequired(), Length(min=1, max=500)])


class SignInAccessForm(Form):
    reason = StringField("Reason", validators=[DataRequired(), Length(min=1, max=500)])


class ForgotPasswordForm(Form):
    email = EmailField("Email", validators=[DataRequired(), Length(max=254)])


class ResetPasswordForm(Form):
    password = PasswordField("New password", validators=[DataRequired(), Length(max=256)])
    confirm = PasswordField("Repeat the new password",
                            validators=[DataRequired(), EqualTo("password",
                                                                "The passwords do not match.")])


class ChangePasswordForm(Form):
    current_password = PasswordField("Current password",
                                     validators=[DataRequired(), Length(max=256)])
    password = PasswordField("New password", validators=[DataRequired(), Length(max=256)])
    confirm = PasswordField("Repeat the new password",
                            validators=[DataRequired(), EqualTo("password",
                                                                "The passwords do not match.")])


class ChangeEmailForm(Form):
    new_email = EmailField("New email address", validators=[DataRequired(), Length(max=254)])
    password = PasswordField("Your password", validators=[DataRequired(), Length(max=256)])


class NotificationsForm(Form):
    one_credit_left = BooleanField("When I have one credit left")
    credits_used_up = BooleanField("When I have used all my credits")
    payment_failed = BooleanField("When a payment for Pro fails")


class SignOutEverywhereForm(Form):
    """Only the CSRF token: the button is the confirmation."""


class TwoFactorForm(Form):
    code = StringField("Code", validators=[DataRequired(), Length(min=6, max=40)])


class RolloutForm(Form):
    percentage = IntegerField("Enforced for (% of free users)",
                              validators=[InputRequired(), NumberRange(min=0, max=100)])
    reason = StringField("Reason", validators=[DataRequired(), Length(min=1, max=500)])


class DeleteAccountForm(Form):
    password = PasswordField("Your password", validators=[DataRequired(), Length(max=256)])
    confirm = BooleanField("I understand that my account, my designs and my uploads are "
                           "deleted for good", validators=[DataRequired(
                               "Tick the box to confirm.")])
