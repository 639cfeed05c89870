"""HTML forms (flask-wtf, CSRF on)."""

from __future__ import annotations

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
from wtforms.validators import DataRequired, EqualTo, InputRequired, Length, NumberRange


class SignupForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=256)])
    confirm = PasswordField("Repeat password",
                            validators=[DataRequired(), EqualTo("password",
                                                                "The passwords do not match.")])


class LoginForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=256)])
    remember = BooleanField("Keep me signed in")


class ApiTokenForm(FlaskForm):
    name = StringField("Token name", validators=[DataRequired(), Length(min=1, max=80)])


class AdjustCreditsForm(FlaskForm):
    operation = SelectField("Action", choices=[SelectChoice("grant", "Grant credits"),
                                               SelectChoice("remove", "Remove credits")],
                            default="grant")
    amount = IntegerField("Credits", validators=[DataRequired(), NumberRange(min=1, max=100_000)])
    reason = StringField("Reason", validators=[DataRequired(), Length(min=1, max=500)])


class RolloutForm(FlaskForm):
    percentage = IntegerField("Enforced for (% of free users)",
                              validators=[InputRequired(), NumberRange(min=0, max=100)])
    reason = StringField("Reason", validators=[DataRequired(), Length(min=1, max=500)])


class DeleteAccountForm(FlaskForm):
    password = PasswordField("Your password", validators=[DataRequired(), Length(max=256)])
    confirm = BooleanField("I understand that my account, my designs and my uploads are "
                           "deleted for good", validators=[DataRequired(
                               "Tick the box to confirm.")])
