"""The usage dashboard, inside the admin (included by project/urls.py before the admin's own)."""

from django.contrib import admin
from django.urls import path

from analytics.dashboard import dashboard

urlpatterns = [path("dashboard/", admin.site.admin_view(dashboard), name="analytics-dashboard")]
